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
// the fix. While streaming, the session renews its signaling connection on
// GO_AWAY or loss without touching the media, restarts ICE when the network
// path fails, and reconnects from scratch when media stops.
//
//	ctl, _ := control.New(ctx, control.Config{})
//	s, err := viewer.New(viewer.Config{Channel: "front-door", Control: ctl,
//		Sinks: []media.Sink{recording}})
//	if err != nil { ... }
//	err = s.Run(ctx) // *viewer.SessionError on failure
//
// States are reported through Config.OnEvent: connecting, awaiting-answer
// (attempt n), connected, streaming, reconnecting (cause), failed
// (diagnosis), stopped.
package viewer
