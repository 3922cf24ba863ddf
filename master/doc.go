// Package master is a KVS WebRTC master: it connects to a signaling
// channel as MASTER and streams one video source (and optionally an Opus
// audio source) to every viewer that sends it an offer.
//
// Run resolves the channel, gets its MASTER endpoints, fetches ICE servers
// through a control.ICECache that is refreshed ahead of expiry (so a new
// viewer always gets valid TURN credentials), and dials the signaling
// WebSocket. Then, as the official masters do:
//
//   - Each viewer (the senderClientId of an SDP_OFFER) gets a
//     PeerConnection of its own, up to Config.MaxViewers. An offer from a
//     viewer that already has one replaces it (as the JS master does). At
//     the limit, one viewer makes room for the new one if it can spare it:
//     the oldest that never connected, else the one whose connection has
//     been down longest, else the one nothing has arrived from for the
//     longest (over 4 s). Otherwise the offer is not answered (KVS gives
//     the master no way to refuse one); it is logged and reported as
//     EventViewerFailed with ErrTooManyViewers.
//   - The answer is sent at once, with recipientClientId and a correlation
//     id; ICE candidates trickle both ways. Candidates from a viewer that
//     arrive before its offer are held for 20 s.
//   - An offer that cannot carry the source's codec (a VP8-only offer for
//     an H.264 source) is not answered: a broken answer would only make the
//     viewer wait for media that never comes. It is logged as an error and
//     reported as EventViewerFailed with a *NegotiationError.
//   - Every viewer has its own tracks, subscribed to a shared
//     media.Broadcaster once it is connected, so it starts on the cached
//     keyframe; an RTCP PLI or FIR from it resends the GOP.
//   - A new offer from a viewer with the same DTLS fingerprint and new ICE
//     credentials is an ICE restart (the viewer's network changed): it is
//     answered on the existing peer connection, so the session and its
//     media survive (EventViewerRestarted).
//   - A viewer whose connection closes, stays disconnected or failed
//     longer than Config.DisconnectedTimeout (waiting for an ICE restart)
//     or does not connect within Config.ConnectTimeout is removed.
//   - The signaling connection is renewed without touching the viewers: on
//     GO_AWAY, when it ends, and before the service's 1-hour limit
//     (Config.RenewAfter), by a signaling.Session. Reconnects back off from
//     100 ms to 10 s with jitter. A second master that connects to the
//     channel takes it over (the newest master connection wins): Run then
//     returns an error wrapping signaling.ErrTakenOver rather than taking
//     it back. On RECONNECT_ICE_SERVER the ICE servers are fetched again
//     for future viewers; connected viewers keep their path.
//
// Two-way, per viewer: with Config.Talkback the audio a viewer sends
// (talk-back) goes to a TalkbackSink of its own (RecordTalkback: an Ogg/Opus
// file per viewer; PipeTalkback: a command, one viewer at a time), and
// EventTalkStarted/EventTalkStopped say who is talking. With
// Config.OnMessage or EchoData, the data channels viewers open are
// accepted; Master.Send replies. Without them the answer declines talk-back
// (the audio section does not receive) and data channels (rejected), so a
// viewer knows at once. The master never asks for a viewer's video.
//
// For example:
//
//	ctl, err := control.New(ctx, control.Config{Region: "us-west-2"})
//	if err != nil { ... }
//	video, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
//	if err != nil { ... }
//	m, err := master.New(master.Config{Channel: "demo", Control: ctl, Video: video, Logger: logger})
//	if err != nil { ... }
//	err = m.Run(ctx) // until ctx ends
//
// WebRTC ingestion: with Config.Ingest the master also joins the channel's
// storage session (JoinStorageSession after every signaling connection,
// repeated every 6 s until its offer comes), answers the session's offer
// (it has no senderClientId; the answer has no recipientClientId) and
// streams its sources to it once; the session records them into the
// channel's stream and serves Multiviewer viewers, whose talk-back comes
// back to Config.Talkback. A new offer (after a re-join) replaces the
// storage peer; a storage peer that fails is re-joined, until 5 in 10
// minutes fail without ever connecting. Master.Storage and the EventStorage* events report the
// link; ingest.go has the rules.
//
// References:
//   - https://docs.aws.amazon.com/kinesisvideostreams-webrtc-dg/latest/devguide/kvswebrtc-websocket-apis.html
//   - https://docs.aws.amazon.com/kinesisvideostreams-webrtc-dg/latest/devguide/kvswebrtc-limits.html
package master
