// Package relay makes one KVS viewer session per channel the source of any
// number of downstream WebRTC peers (browsers, players), so a camera
// encrypts and uploads one copy of its stream however many people watch.
//
// A [Relay] opens a channel's upstream session (a [viewer.Session], with
// its retries, signaling renewal, ICE restarts and reconnects) when the
// first downstream peer joins, shares it with every peer of the channel
// and closes it [Config.Linger] after the last one leaves; channels listed
// in [Config.Warm] stay open for the life of the Relay.
//
// Each downstream peer ([Peer]) has its own PeerConnection. The upstream
// frames are forwarded unchanged (no transcoding) through a
// [media.Broadcaster] per track: a peer that joins mid-stream starts on
// the cached current GOP, and every peer has its own bounded queue
// ([media.QueuedWriter]), so a slow peer loses frames on its own
// connection without holding back the others. Audio is relayed when
// [Config.Audio] is set.
//
// Two-way features pass through the same upstream session. With
// [Config.Talk] the peers talk back to the camera, one speaker at a time:
// the first peer whose audio arrives holds the floor until it has been
// silent for [Config.FloorIdle] (or leaves), the others' audio is dropped
// meanwhile, and [Status].Talker names the holder; a camera that declines
// talk-back is reported in the Status (TalkDeclined, Detail). With
// [Config.Data] every data channel a peer opens is accepted: its messages
// go to the camera unchanged (and to [Config.OnMessage], with the peer's
// ID), and the camera's messages go to every peer with an open data
// channel. Both come back by themselves with each new upstream session.
//
// Upstream trouble reaches every peer of the channel as a [Status]
// (reconnecting, offline, with its [cause.Cause]); recovery needs nothing
// from the peers: their tracks stay, and media resumes on a keyframe. A
// peer's own network trouble stays on its own connection: it restarts ICE
// ([Peer.Patch]) without touching the upstream.
//
// The package has no HTTP: package whep serves it to browsers (WHEP,
// RFC 9725). Use it directly as:
//
//	r, err := relay.New(relay.Config{Control: ctl})
//	if err != nil {
//		return err
//	}
//	defer r.Close()
//	peer, err := r.Join(ctx, "front-door", offerSDP)
//	if err != nil {
//		return err // errors.Is(err, relay.ErrUnknownChannel), ...
//	}
//	answerSDP := peer.Answer()
//
// [Relay.Stats] reports peers per channel, upstream sessions, bytes in and
// out, forwarding drops, per-peer round-trip times, talk-back packets and
// data channel messages;
// [Stats.WritePrometheus] writes them in the Prometheus text format.
package relay
