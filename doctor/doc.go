// Package doctor diagnoses why a KVS WebRTC viewer does not get its SDP
// answer or its video. It runs the checks a support engineer would, in
// order, each with a status (pass, warn: it works with a finding, fail,
// skip), its duration and the evidence it saw:
//
//  1. credentials: who am I (STS GetCallerIdentity at the endpoint the
//     request really went to; against the local emulator, its STS
//     endpoint)
//  2. clock: the offset between this machine's clock and the service's
//  3. channel: the channel exists and is ACTIVE (ARN, message TTL); when it
//     does not, the channels that do exist are listed
//  4. endpoints: the VIEWER WSS and HTTPS endpoints
//  5. ice-servers: GetIceServerConfig (TURN servers, their TTL)
//  6. turn: a real TURN allocation with those credentials
//  7. client-id: the client id follows the rules
//  8. signaling: the WebSocket connects as a viewer
//  9. master: an offer with a correlationId (trickle ICE announced, a
//     receive-only audio section always included) is answered (answer
//     time; slower than the viewer's answer timeout is a slow-answer
//     finding with the likely reason and the fix), or refused
//     (STATUS_RESPONSE), or met with silence for AnswerWait (15 s, well
//     beyond the viewer's timeout: a dead master, not a slow one)
//  10. ice: the peer connection connects (local and remote candidates by
//     type: host, srflx, relay, the remote ones both trickled and in the
//     answer's SDP; the selected pair)
//  11. media: the first video frame arrives (codec, resolution)
//
// A service that gives no answer at all (DNS, dial, TLS, proxy, timeout) is
// named by the first check that reaches it, with cause service-unreachable,
// the endpoint, what failed and the fix, as kvsrtc view says it.
//
// The report ends with a verdict naming the most likely cause, in the terms
// of the blog post kvsrtc started from (cause.Cause, with SeedReason), and
// what to do about it.
//
//	rep, err := doctor.Run(ctx, doctor.Config{Channel: "front-door", Control: ctl})
//	if err != nil { ... } // invalid Config only
//	rep.WriteText(os.Stdout)
//	if !rep.OK() { os.Exit(1) }
package doctor
