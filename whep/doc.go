// Package whep serves a [relay.Relay] to WebRTC players over WHEP, the
// WebRTC-HTTP egress protocol (RFC 9725, draft-ietf-wish-whep, as served by
// mediamtx and go2rtc), and has a small WHEP [Client] for Go programs and
// tests.
//
// A [Handler] mounted at a prefix (default "/whep/") serves:
//
//	POST   /whep/{channel}            SDP offer (application/sdp) -> 201 Created, SDP answer, Location
//	PATCH  /whep/{channel}/{id}       trickle ICE or ICE restart (application/trickle-ice-sdpfrag)
//	DELETE /whep/{channel}/{id}       leave
//	GET    /whep/{channel}/{id}/events  the channel's upstream status, as server-sent events
//	OPTIONS /whep/{channel}           CORS preflight and Accept-Post
//
// The answer carries every candidate of the relay (the relay does not
// trickle), and the 201 response links the status events with
// Link: <...>; rel="urn:ietf:params:whep:ext:core:server-sent-events".
// Each event is a JSON [relay.Status] (event type "status").
//
// Config.Auth authenticates every request as the mounting server wants;
// bad requests get a 4xx status with a plain-text body that names the
// problem and the fix:
//
//	400 an offer that is not SDP, has no video section, or lacks the channel's codec; a malformed fragment
//	401 Config.Auth refused the request (403 if its error wraps ErrForbidden)
//	404 an unknown channel, or an unknown resource on PATCH, DELETE or GET
//	405 another method (with Allow)
//	413 a body over Config.MaxBodyBytes
//	415 a body that is not application/sdp (POST) or application/trickle-ice-sdpfrag (PATCH)
//	422 a fragment for another ICE session
//	503 the camera sent no video in time, or the channel is at its peer limit (with Retry-After)
package whep
