// Package browsertest holds kvsrtc's end-to-end tests in real headless
// Chromium (Debian's chromium, driven with chromedp): the web player
// (package player) playing a kvsrtc master's video, recovering from a lost
// answer and explaining a stopped camera; the security of its secrets; and
// interoperability with the official KVS WebRTC JS SDK and AWS SDK for
// JavaScript (npm packages under js/, installed by scripts/test.sh), in both
// directions, through the local KVS service with TLS: the official viewer
// flow plays "kvsrtc master", and "kvsrtc view" plays the official master
// flow (the kvsrtc binary is built once for these); the <kvs-viewer>
// element under a strict Content-Security-Policy and both embedding examples
// (examples/embed-go, examples/embed-static), run as docs/EMBED.md says; and
// an independent WHEP player (@eyevinn/webrtc-player) playing a camera
// through package whep. It has no code outside its tests.
//
// All traffic stays on loopback: the emulator, the player, the masters and
// the test pages listen on 127.0.0.1, the pion peers gather loopback
// candidates only, Chromium is started with --allow-loopback-in-peer-connection
// and its pages send only loopback candidates and get only the local TURN
// servers.
//
// The tests fail (they do not skip) when chromium or the npm packages are
// missing; run scripts/test.sh once to install them. Set
// KVSRTC_BROWSER_BENCH=1 to run the time-to-first-frame comparison that
// docs/BENCHMARKS.md reports.
package browsertest
