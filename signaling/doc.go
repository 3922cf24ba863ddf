// Package signaling is the WebSocket signaling client of Amazon Kinesis
// Video Streams WebRTC, for masters and viewers.
//
// Dial presigns the channel's WSS endpoint exactly as the official JS SDK
// does (sigv4.PresignURL, X-Amz-Expires=299), opens the WebSocket and
// starts reading. Incoming frames are parsed leniently into Events
// (unknown types, API Gateway notices and undecodable payloads are skipped;
// GO_AWAY, RECONNECT_ICE_SERVER and STATUS_RESPONSE are delivered for the
// session to act on). Send and its helpers validate and send SDP offers,
// answers and ICE candidates. WebSocket pings detect a silently dead
// connection. A Client never reconnects: when Done is closed, Err says why,
// and the session dials again.
//
//	c, err := signaling.Dial(ctx, signaling.Config{
//		Endpoint:    endpoints.WSS,
//		ChannelARN:  channel.ARN,
//		Role:        kvsproto.RoleViewer,
//		ClientID:    "viewer-1",
//		Region:      ctl.Region(),
//		Credentials: ctl.SigV4Credentials,
//		Now:         ctl.Now,
//	})
//	var he *signaling.HandshakeError
//	if errors.As(err, &he) && errors.Is(err, signaling.ErrForbidden) { ... }
//	defer c.Close()
//	_ = c.SendOffer(ctx, offer, "", "")
//	for ev := range c.Events() {
//		switch ev.Type {
//		case kvsproto.MessageSDPAnswer: ...
//		case kvsproto.MessageICECandidate: ...
//		case kvsproto.MessageGoAway: ...
//		}
//	}
//	err = c.Err() // *signaling.CloseError, ErrKeepaliveTimeout, ...
//
// A Session is a connection that renews itself: NewSession with a Dialer
// (DialerFor(cfg) for the service; ConfigDialer also measures the clock
// again after a clock-skew refusal), then Run. It dials a replacement at an
// age (RenewAfter, 50 min by default, ahead of the service's 1-hour limit),
// on GO_AWAY and when the connection ends unexpectedly, with backoff
// between failed dials; the old connection stays in use until the new one
// is up and is read for DrainGrace after. A close for a newer connection
// with the same identity (TakenOver: code 4001 or a reason naming the
// replacement) ends Run with ErrTakenOver instead. Events merges the
// messages of the current and draining connections with lifecycle events
// (SessionConnected, SessionRenewing, SessionRenewed, SessionRenewFailed,
// SessionTakenOver, SessionOutboxDropped), so that the caller keeps its
// policy; Send queues messages in an outbox (for OutboxTTL) while no
// connection is up.
//
// References:
//   - https://docs.aws.amazon.com/kinesisvideostreams-webrtc-dg/latest/devguide/kvswebrtc-websocket-apis.html
//   - https://docs.aws.amazon.com/kinesisvideostreams-webrtc-dg/latest/devguide/async-message-reception-api.html
package signaling
