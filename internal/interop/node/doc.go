// Package node holds kvsrtc's interoperability tests with the official KVS
// WebRTC JS SDK (amazon-kinesis-video-streams-webrtc 2.9.0) and the AWS SDK
// for JavaScript v2 running outside the browser, in Node, with @roamhq/wrtc
// (libwebrtc; VP8, VP9 and AV1, no H.264) as RTCPeerConnection and ws as
// WebSocket. The npm packages are pinned in js/package-lock.json and
// installed by scripts/deps/node.sh; js/kvs-peer.js is the test's own glue
// around them.
//
// Both roles are tested against the local KVS service (package emulator)
// with TLS, which the SDK requires (it refuses ws:// endpoints); Node trusts
// the service's certificate through NODE_EXTRA_CA_CERTS:
//
//   - the SDK as VIEWER plays a kvsrtc master (package master) sending the
//     VP8 test pattern: 10 connects, each must decode video;
//   - kvsrtc's viewer (package viewer) plays the SDK as MASTER sending a
//     generated moving I420 pattern through RTCVideoSource.
//
// Each test also runs kvsrtc's own viewer against a kvsrtc master in the
// same run and logs both times to first frame (medians) side by side.
//
// Loopback only: when the test binary runs as root on Linux it re-executes
// itself in a new network namespace that has nothing but a loopback
// interface, so the service, the kvsrtc peers and Node cannot reach any
// other address; the glue also signals and accepts 127.0.0.1 candidates
// only, and the pion peers gather loopback candidates only.
//
// The tests fail when CI=true and node, the npm packages or the network
// namespace are missing, and skip otherwise; run scripts/test.sh (or bash
// scripts/deps/node.sh) once to install them. It has no code outside its
// tests.
package node
