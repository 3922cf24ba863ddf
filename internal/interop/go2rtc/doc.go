// Package go2rtctest tests kvsrtc against go2rtc (github.com/AlexxIT/go2rtc
// v1.9.14), an independent Go WebRTC stack, playing a KVS viewer of a
// "kvsrtc master" through the local KVS service (package emulator).
//
// go2rtc's KVS mode is a stream source,
//
//	webrtc:<presigned WSS URL>#format=kinesis#client_id=<id>#ice_servers=<JSON>
//
// It makes no control-plane call and signs nothing, so the tests mint what it
// needs for every connect the way a KVS application would: the channel's
// VIEWER endpoints and ICE servers (control.Client), a presigned viewer URL
// (signaling.PresignURL) and a fresh client id. go2rtc v1.9.14 ignores an ICE
// server whose "urls" is a list, so every URL gets a server object of its own.
// The go2rtc binary is started with a generated configuration (HTTP API on a
// free 127.0.0.1 port, no RTSP, WebRTC or SRTP listener, only the api, ws,
// webrtc and mp4 modules); a consumer is a GET of /api/stream.mp4 on a new
// stream per connect, and the time to first frame is the time from minting
// the URL to the first "mdat" box of the fragmented MP4 (a whole video frame
// went through go2rtc's WebRTC client, depacketizer and muxer).
//
// The tests are:
//   - TestGo2rtcViewer: 10 connects with fresh client ids, each must reach a
//     first frame; then 10 connects of kvsrtc's own viewer (package viewer)
//     to the same master, and both medians are logged. The "host" case
//     lets ICE pick its path; in the "relay" case the master uses TURN only
//     (go2rtc's KVS source has no setting to force relay on its side), and
//     kvsrtc's viewer is measured both with and without ForceRelay.
//   - TestGo2rtcKilledSlotFreed: a go2rtc killed with SIGKILL while it
//     streams gives back its viewer slot on the master; the time is logged.
//
// # Network
//
// go2rtc's KVS source builds its own WebRTC stack with default settings: the
// "webrtc: filters" of its configuration do not apply to it, and it never
// gathers loopback candidates. So the test binary re-executes itself in a
// network namespace of its own (unshare(1) with --net, and --user
// --map-root-user when not root) where lo is up and a veth pair holds
// 198.18.0.1/32, go2rtc's only host address. Everything (emulator, TURN,
// master, kvsrtc viewers, go2rtc) runs in that namespace and no packet can
// leave it. Where a namespace cannot be made (no unshare or ip, no
// permission), the tests run in the current namespace and say so: go2rtc's
// host candidates are then this machine's own addresses, to which packets are
// delivered locally.
//
// # Running
//
// The binary is built by scripts/deps/go2rtc.sh (Go module proxy, about 4
// minutes of CPU, cached in $XDG_CACHE_HOME/kvsrtc or ~/.cache/kvsrtc, or
// $KVSRTC_CACHE_DIR); KVSRTC_GO2RTC names another binary. Without it the
// tests skip, and fail when CI=true.
//
//	bash scripts/deps/go2rtc.sh
//	go test -race -count=1 -v ./internal/interop/go2rtc/
//
// KVSRTC_TEST_LOG=debug logs the kvsrtc side; KVSRTC_GO2RTC_LOG=trace sets
// go2rtc's log level (its log is printed when a test fails).
//
// The package has only tests.
package go2rtctest
