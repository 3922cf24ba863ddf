package relay

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

// Stats is a snapshot of a Relay, for metrics.
type Stats struct {
	// UpstreamsOpen is the number of channels with an upstream open.
	UpstreamsOpen int
	// UpstreamsOpened counts the upstreams opened since New.
	UpstreamsOpened uint64
	// Peers is the number of downstream peers, all channels.
	Peers int
	// BytesIn and BytesOut are the media payload bytes received from
	// cameras and handed to peers' connections (before RTP and SRTP
	// overhead), all channels, since New.
	BytesIn, BytesOut uint64
	// Dropped counts samples dropped on peers' queues, since New.
	Dropped uint64
	// Channels holds one entry per open upstream, by channel name.
	Channels []ChannelStats
}

// ChannelStats describes one channel's upstream and its peers.
type ChannelStats struct {
	Channel string
	Status  Status
	Warm    bool
	// Sessions counts the upstream viewer sessions opened for this
	// upstream (more than one: the camera went offline in between).
	Sessions uint64
	// FramesIn, BytesIn: video frames and media bytes from the camera.
	FramesIn, BytesIn uint64
	// BytesOut, Dropped: over the channel's peers, present and gone.
	BytesOut, Dropped uint64
	// TalkPackets counts the peers' talk-back (Opus) packets handed to
	// the upstream session (Config.Talk); TalkDropped those dropped:
	// another peer held the floor, the camera declined talk-back, or no
	// upstream session was up.
	TalkPackets, TalkDropped uint64
	// Data channel messages (Config.Data): MessagesIn are the messages
	// from the camera, MessagesOut the peers' messages sent on to the
	// camera, MessagesToPeers the deliveries of the camera's messages to
	// peers (one per peer with an open data channel), MessagesDropped the
	// messages dropped either way (over 64 KiB, declined by the camera,
	// queue full, upstream down, slow peer).
	MessagesIn, MessagesOut, MessagesToPeers, MessagesDropped uint64
	Peers                                                     []PeerStats
}

// PeerStats describes one downstream peer.
type PeerStats struct {
	ID          string
	State       string // the peer connection's state
	Created     time.Time
	ConnectedAt time.Time // zero before it connected
	BytesOut    uint64    // media payload bytes handed to its tracks
	Samples     uint64    // samples handed to its tracks
	Dropped     uint64    // samples dropped on its queues
	ICERestarts int
	// RTT is the round-trip time of its selected ICE candidate pair (0:
	// not measured yet).
	RTT time.Duration
}

// Stats returns a snapshot of the relay's upstreams and peers. It reads
// each peer's WebRTC statistics, so call it at scrape rates, not per frame.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	ups := make([]*upstream, 0, len(r.chans))
	for _, u := range r.chans {
		ups = append(ups, u)
	}
	s := Stats{
		UpstreamsOpen: len(ups), UpstreamsOpened: r.opened,
		BytesIn: r.retired.bytesIn, BytesOut: r.retired.bytesOut, Dropped: r.retired.dropped,
	}
	r.mu.Unlock()
	for _, u := range ups {
		cs := u.stats()
		s.Channels = append(s.Channels, cs)
		s.Peers += len(cs.Peers)
		s.BytesIn += cs.BytesIn
		s.BytesOut += cs.BytesOut
		s.Dropped += cs.Dropped
	}
	slices.SortFunc(s.Channels, func(a, b ChannelStats) int { return strings.Compare(a.Channel, b.Channel) })
	return s
}

func (u *upstream) stats() ChannelStats {
	u.mu.Lock()
	cs := ChannelStats{Channel: u.name, Status: u.status, Warm: u.warm, Sessions: u.sessions}
	peers := make([]*Peer, 0, len(u.peers))
	for p := range u.peers {
		peers = append(peers, p)
	}
	u.mu.Unlock()
	cs.FramesIn = u.framesIn.Load()
	cs.BytesIn = u.bytesIn.Load() + u.audioIn.Load()
	cs.BytesOut, cs.Dropped = u.goneOut.Load(), u.goneDropped.Load()
	cs.TalkPackets, cs.TalkDropped = u.talkForwarded.Load(), u.talkDropped.Load()
	cs.MessagesIn, cs.MessagesOut = u.msgsFromCamera.Load(), u.msgsToCamera.Load()
	cs.MessagesToPeers, cs.MessagesDropped = u.msgsToPeers.Load(), u.msgsDropped.Load()
	for _, p := range peers {
		ps := p.Stats()
		cs.Peers = append(cs.Peers, ps)
		cs.BytesOut += ps.BytesOut
		cs.Dropped += ps.Dropped
	}
	slices.SortFunc(cs.Peers, func(a, b PeerStats) int { return a.Created.Compare(b.Created) })
	return cs
}

// Stats returns the peer's counters and round-trip time.
func (p *Peer) Stats() PeerStats {
	p.mu.Lock()
	ps := PeerStats{
		ID: p.id, State: p.state.String(), Created: p.created, ConnectedAt: p.connectedAt,
		ICERestarts: p.restarts,
	}
	vq, aq := p.vq, p.aq
	p.mu.Unlock()
	if vq != nil {
		q := vq.Stats()
		ps.BytesOut, ps.Samples, ps.Dropped = q.Bytes, q.Written, q.Dropped
	}
	if aq != nil {
		q := aq.Stats()
		ps.BytesOut += q.Bytes
		ps.Samples += q.Written
		ps.Dropped += q.Dropped
	}
	ps.RTT = selectedPairRTT(p.pc)
	return ps
}

// selectedPairRTT returns the current round-trip time of the nominated,
// succeeded candidate pair.
func selectedPairRTT(pc *webrtc.PeerConnection) time.Duration {
	for _, st := range pc.GetStats() {
		cp, ok := st.(webrtc.ICECandidatePairStats)
		if ok && cp.Nominated && cp.State == webrtc.StatsICECandidatePairStateSucceeded && cp.CurrentRoundTripTime > 0 {
			return time.Duration(cp.CurrentRoundTripTime * float64(time.Second))
		}
	}
	return 0
}

// WritePrometheus writes the statistics in the Prometheus text exposition
// format (metric names kvsrtc_relay_*), for a server's /metrics.
func (s Stats) WritePrometheus(w io.Writer) error {
	var b strings.Builder
	metric := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	metric("kvsrtc_relay_upstreams", "gauge", "Channels with an upstream viewer session open.")
	fmt.Fprintf(&b, "kvsrtc_relay_upstreams %d\n", s.UpstreamsOpen)
	metric("kvsrtc_relay_upstreams_opened_total", "counter", "Upstreams opened.")
	fmt.Fprintf(&b, "kvsrtc_relay_upstreams_opened_total %d\n", s.UpstreamsOpened)
	metric("kvsrtc_relay_bytes_in_total", "counter", "Media payload bytes received from cameras.")
	fmt.Fprintf(&b, "kvsrtc_relay_bytes_in_total %d\n", s.BytesIn)
	metric("kvsrtc_relay_bytes_out_total", "counter", "Media payload bytes sent to peers.")
	fmt.Fprintf(&b, "kvsrtc_relay_bytes_out_total %d\n", s.BytesOut)
	metric("kvsrtc_relay_dropped_samples_total", "counter", "Samples dropped on slow peers' queues.")
	fmt.Fprintf(&b, "kvsrtc_relay_dropped_samples_total %d\n", s.Dropped)
	metric("kvsrtc_relay_peers", "gauge", "Downstream peers per channel.")
	for _, c := range s.Channels {
		fmt.Fprintf(&b, "kvsrtc_relay_peers{channel=%q} %d\n", c.Channel, len(c.Peers))
	}
	metric("kvsrtc_relay_upstream_state", "gauge", "1 for the state of each channel's upstream.")
	for _, c := range s.Channels {
		fmt.Fprintf(&b, "kvsrtc_relay_upstream_state{channel=%q,state=%q} 1\n", c.Channel, c.Status.State)
	}
	metric("kvsrtc_relay_upstream_sessions_total", "counter", "Upstream viewer sessions opened per channel.")
	for _, c := range s.Channels {
		fmt.Fprintf(&b, "kvsrtc_relay_upstream_sessions_total{channel=%q} %d\n", c.Channel, c.Sessions)
	}
	metric("kvsrtc_relay_channel_bytes_in_total", "counter", "Media payload bytes received per channel.")
	for _, c := range s.Channels {
		fmt.Fprintf(&b, "kvsrtc_relay_channel_bytes_in_total{channel=%q} %d\n", c.Channel, c.BytesIn)
	}
	metric("kvsrtc_relay_channel_bytes_out_total", "counter", "Media payload bytes sent per channel.")
	for _, c := range s.Channels {
		fmt.Fprintf(&b, "kvsrtc_relay_channel_bytes_out_total{channel=%q} %d\n", c.Channel, c.BytesOut)
	}
	metric("kvsrtc_relay_channel_dropped_samples_total", "counter", "Samples dropped per channel.")
	for _, c := range s.Channels {
		fmt.Fprintf(&b, "kvsrtc_relay_channel_dropped_samples_total{channel=%q} %d\n", c.Channel, c.Dropped)
	}
	metric("kvsrtc_relay_channel_talkback_packets_total", "counter", "Peers' talk-back packets per channel: forwarded to the camera, or dropped.")
	for _, c := range s.Channels {
		fmt.Fprintf(&b, "kvsrtc_relay_channel_talkback_packets_total{channel=%q,result=\"forwarded\"} %d\n", c.Channel, c.TalkPackets)
		fmt.Fprintf(&b, "kvsrtc_relay_channel_talkback_packets_total{channel=%q,result=\"dropped\"} %d\n", c.Channel, c.TalkDropped)
	}
	metric("kvsrtc_relay_channel_data_messages_total", "counter",
		"Data channel messages per channel: in from the camera, out to the camera, delivered to peers.")
	for _, c := range s.Channels {
		for _, m := range []struct {
			dir string
			n   uint64
		}{{"in", c.MessagesIn}, {"out", c.MessagesOut}, {"to-peers", c.MessagesToPeers}} {
			fmt.Fprintf(&b, "kvsrtc_relay_channel_data_messages_total{channel=%q,direction=%q} %d\n", c.Channel, m.dir, m.n)
		}
	}
	metric("kvsrtc_relay_channel_data_dropped_total", "counter", "Data channel messages dropped per channel.")
	for _, c := range s.Channels {
		fmt.Fprintf(&b, "kvsrtc_relay_channel_data_dropped_total{channel=%q} %d\n", c.Channel, c.MessagesDropped)
	}
	metric("kvsrtc_relay_peer_rtt_seconds", "gauge", "Round-trip time of each peer's selected candidate pair.")
	for _, c := range s.Channels {
		for _, p := range c.Peers {
			fmt.Fprintf(&b, "kvsrtc_relay_peer_rtt_seconds{channel=%q,peer=%q} %g\n", c.Channel, p.ID, p.RTT.Seconds())
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
