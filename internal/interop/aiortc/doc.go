// Package aiortc tests kvsrtc against aiortc (Debian's python3-aiortc
// 1.4.0), an independent WebRTC stack in Python, playing a KVS master.
//
// aiortc never trickles: it gathers every ICE candidate before its answer
// exists, so it is a real non-trickle master, the behaviour of a KVS C SDK
// camera answering a non-trickle offer. kvs_master.py is the small KVS glue
// (signaling WebSocket, message envelope, one aiortc peer connection per
// viewer, a generated video track; with --two-way it also decodes the
// viewer's talk-back audio and echoes its data channel messages); the Go
// tests run the local KVS service
// (package emulator), presign the master's WSS URL, fetch the channel's ICE
// servers and hand both to the script.
//
// The script gathers on 127.0.0.1 only: aioice lists every interface except
// loopback, so the glue replaces that list instead of moving Python into a
// separate network namespace, where the emulator in the test process would
// not be reachable on loopback.
//
// The tests need /usr/bin/python3 with aiortc and websockets (installed by
// scripts/deps/aiortc.sh); they skip without them, and fail when CI is set.
//
//	go test -race -count=1 -v ./internal/interop/aiortc/
//
// The package has only tests.
package aiortc
