// Package hub is the in-memory message router of the KVS signaling emulator:
// channels, their master and viewer connections, routing of SDP offers,
// answers and ICE candidates with KVS semantics, undelivered-message
// buffering for the channel's message TTL, connection and message quotas,
// STATUS_RESPONSE on failures, and injected faults. It knows nothing about
// WebSockets or HTTP: the emulator hands it connections as Conn values.
//
// Usage, from the emulator's WebSocket handler:
//
//	h := hub.New(hub.Config{Logger: log})
//	defer h.Close()
//	...
//	m, err := h.Join(hub.JoinRequest{ChannelARN: arn, MessageTTL: ttl,
//		Role: kvsproto.RoleViewer, ClientID: id, Conn: conn})
//	switch {
//	case errors.Is(err, hub.ErrThrottled), errors.Is(err, hub.ErrTooManyViewers):
//		// HTTP 400 ClientLimitExceededException on the upgrade
//	case errors.Is(err, hub.ErrChannelGone):
//		// HTTP 404
//	}
//	defer m.Leave()
//	for { frame := read(); m.Handle(frame) }
//
// Semantics follow the KVS WebRTC developer guide (SendSdpOffer,
// ConnectAsMaster, ConnectAsViewer, "Disconnect and GO_AWAY") and the quota
// table (https://docs.aws.amazon.com/kinesisvideostreams-webrtc-dg/latest/devguide/limits.html).
// Where the service's behaviour is not documented (close codes of displaced
// connections, the STATUS_RESPONSE for rate limits), the choices are the
// package-level constants below so they are easy to change.
package hub
