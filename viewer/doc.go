// Package viewer is a KVS WebRTC viewer session: it connects to a signaling
// channel, sends an SDP offer that receives video (and audio when asked),
// trickles ICE both ways, applies the master's answer and hands the media to
// sinks (a recording, a pipe, statistics).
//
// The session owns its failure budget. Each attempt gets a fresh client id
// and waits RetryPolicy.AnswerTimeout for the answer; on a timeout the
// attempt is torn down completely (timers, signaling, transceivers, peer
// connection, goroutines) and the next one starts after a jittered backoff.
// What retrying cannot fix (rejected credentials, an unknown channel, an
// invalid client id) fails at once with a *SessionError naming the cause and
// the fix; throttling is retried with a growing backoff, and a full channel
// is waited out only with Config.WaitForSlot.
//
// While streaming, the session keeps its media through everything it can:
//   - The signaling connection (a signaling.Session per attempt, with the
//     attempt's client id) is renewed in the background on GO_AWAY, when
//     it closes (idle timeout, connection cap), when its keepalive goes
//     unanswered (a socket that died silently) and before the 1-hour limit
//     (Config.SignalingRenewAfter); a renewal refused for the signing time
//     measures the clock offset again.
//   - When ICE disconnects or fails, or video stops although the peer
//     connection looks connected, it restarts ICE over signaling with fresh
//     ICE servers (TURN credentials expire), and keeps its peer connection
//     (the kvsrtc master answers the restart on its side of it). If the
//     restart fails, or video does not resume within Config.StallTimeout,
//     it reconnects from scratch with a fresh client id.
//   - A relay-only attempt whose TURN allocation is refused fetches fresh
//     ICE servers and tries again.
//   - When a newer connection with the same client id takes over, it
//     continues with a fresh client id (cause client-id-reuse) instead of
//     taking the id back.
//
// docs/RESILIENCE.md lists every cause, what the viewer does about it, and
// the test that proves it.
//
//	ctl, _ := control.New(ctx, control.Config{})
//	s, err := viewer.New(viewer.Config{Channel: "front-door", Control: ctl,
//		Sinks: []media.Sink{recording}})
//	if err != nil { ... }
//	err = s.Run(ctx) // *viewer.SessionError on failure
//
// Two-way: with Config.Talk (an Opus source: a file, the test tone, stdin)
// the offer's audio section also sends, and with Config.Data it opens a
// data channel ("kvsDataChannel"), both in the same offer, in every attempt,
// so they come back by themselves after a reconnect. Session.Send waits for
// the open channel and for its buffer to drain (back-pressure);
// Session.Receive returns what the master sends. A master that declines
// either says so in its answer: Event.Declined carries ErrTalkbackDeclined
// or ErrDataChannelDeclined (Send returns the latter), and video goes on.
//
//	s, _ := viewer.New(viewer.Config{Channel: "front-door", Control: ctl, Talk: tone, Data: true})
//	go s.Run(ctx)
//	err := s.SendText(ctx, `{"pan": -10}`)
//	msg, err := s.Receive(ctx)
//
// Multiviewer: with Config.Storage each attempt joins the channel's storage
// session (WebRTC ingestion) with JoinStorageSessionAsViewer instead of
// offering to the master, and answers the session's offer; the rest of the
// policy is the same, with the storage path's causes
// (storage-not-configured, stream-missing, storage-full, no-storage-offer).
// storage.go has the rules.
//
// States are reported through Config.OnEvent: connecting, awaiting-answer
// (attempt n), connected, streaming, reconnecting (cause), failed
// (diagnosis), stopped.
package viewer
