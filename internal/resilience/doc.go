// Package resilience holds the tests that prove how kvsrtc handles every
// reason a KVS WebRTC viewer does not get (or loses) its SDP answer or its
// media: one test per row of docs/RESILIENCE.md, each driving the local
// emulator with real viewers, masters and peer connections, and a chaos
// soak of ten viewers and a master under random faults.
//
// It has no non-test code; run it with
//
//	go test -race ./internal/resilience
//	KVSRTC_SOAK=10m go test -run Soak -timeout 20m ./internal/resilience
package resilience
