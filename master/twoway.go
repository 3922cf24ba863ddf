package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// This file is the two-way part of a viewer's peer: the audio a viewer
// sends (talk-back) and the data channels it opens.

// Two-way errors.
var (
	// ErrNoViewer: Send named a client id that is not a current viewer.
	ErrNoViewer = errors.New("master: no such viewer")
	// ErrNoDataChannel: the viewer has no open data channel (it did not
	// open one, or it is not open yet), or the master accepts none
	// (Config.OnMessage and Config.EchoData unset).
	ErrNoDataChannel = errors.New("master: the viewer has no open data channel")
	// ErrMessageTooLarge: a data channel message is over MaxMessageSize.
	ErrMessageTooLarge = errors.New("master: data channel message too large")
	// ErrTalkbackBusy is returned by a Talkback function that takes one
	// viewer at a time (PipeTalkback) while another viewer holds it; that
	// viewer's audio is dropped.
	ErrTalkbackBusy = errors.New("master: another viewer is talking")
)

// MaxMessageSize is the largest data channel message the master sends or
// accepts (64 KiB); a larger incoming message is dropped and logged.
const MaxMessageSize = rtc.MaxMessageSize

// TalkbackSink receives one viewer's talk-back audio: its Opus RTP
// packets in order of arrival, then Close when the viewer stops sending
// (its track ended, it left, or the master stops). pion's
// oggwriter.OggWriter is one; see RecordTalkback and PipeTalkback.
type TalkbackSink interface {
	WriteRTP(*rtp.Packet) error
	Close() error
}

// Message is a data channel message from a viewer.
type Message struct {
	// ClientID is the viewer that sent it.
	ClientID string
	// Label is the data channel's label ("kvsDataChannel" for the
	// official samples and kvsrtc).
	Label string
	// Data is the message.
	Data []byte
	// Text reports a text (UTF-8) message rather than a binary one.
	Text bool
	// Time is when it arrived.
	Time time.Time
}

// talkIdle is how long a viewer's audio may pause before it counts as no
// longer talking (EventTalkStopped) while its track stays open.
const talkIdle = 2 * time.Second

// sendHighWater and sendLowWater bound what a data channel may buffer:
// Send blocks above the high-water mark until the buffer drains to the
// low-water mark (back-pressure instead of unbounded memory).
const (
	sendHighWater = 1 << 20
	sendLowWater  = 256 << 10
)

// twoWay is a peer's data channel state.
type twoWay struct {
	mu  sync.Mutex
	dcs []*webrtc.DataChannel                 // open data channels, newest last
	low map[*webrtc.DataChannel]chan struct{} // signalled when the buffer drains
}

// twoWayNote is what a track reader or data channel tells the loop.
type twoWayNote struct {
	kind  EventKind
	label string
}

// acceptsData reports whether the master accepts data channels.
func (c Config) acceptsData() bool { return c.OnMessage != nil || c.EchoData }

// onDataChannel wires a new peer connection's data channels. This is the
// one pion callback set outside rtc.Peer: a data channel's own callbacks
// (open, message, close, buffered amount) are per channel, and a message
// is handled on the channel's reader so that a slow Config.OnMessage
// pushes back on that viewer (SCTP flow control); a channel of values
// would lose that. Remote tracks come through rtc.Peer (pump).
func (r *run) onDataChannel(p *peer) {
	p.conn.PC.OnDataChannel(func(dc *webrtc.DataChannel) {
		if !r.cfg.acceptsData() {
			r.log.Info("the viewer opened a data channel; declining it (no data handler: kvsrtc master --data)", "viewer", p.id, "label", dc.Label())
			// Closing it as soon as it opens tells the viewer at once.
			dc.OnOpen(func() { _ = dc.Close() })
			return
		}
		r.acceptData(p, dc)
	})
}

// acceptData handles one data channel from a viewer.
func (r *run) acceptData(p *peer, dc *webrtc.DataChannel) {
	low := make(chan struct{}, 1)
	dc.SetBufferedAmountLowThreshold(sendLowWater)
	dc.OnBufferedAmountLow(func() {
		select {
		case low <- struct{}{}:
		default:
		}
	})
	dc.OnOpen(func() {
		p.tw.mu.Lock()
		if p.tw.low == nil {
			p.tw.low = make(map[*webrtc.DataChannel]chan struct{})
		}
		p.tw.dcs = append(p.tw.dcs, dc)
		p.tw.low[dc] = low
		p.tw.mu.Unlock()
		p.forward(r.peerEvents, peerEvent{p: p, tw: &twoWayNote{kind: EventDataChannelOpened, label: dc.Label()}})
	})
	dc.OnClose(func() {
		p.tw.mu.Lock()
		for i, d := range p.tw.dcs {
			if d == dc {
				p.tw.dcs = append(p.tw.dcs[:i], p.tw.dcs[i+1:]...)
				break
			}
		}
		delete(p.tw.low, dc)
		p.tw.mu.Unlock()
	})
	dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		if len(msg.Data) > MaxMessageSize {
			r.log.Warn("dropping a data channel message over the size limit", "viewer", p.id, "bytes", len(msg.Data), "limit", MaxMessageSize)
			return
		}
		if r.cfg.EchoData {
			var err error
			if msg.IsString {
				err = dc.SendText(string(msg.Data))
			} else {
				err = dc.Send(msg.Data)
			}
			if err != nil {
				r.log.Debug("echoing a data channel message", "viewer", p.id, "err", err)
			}
		}
		if r.cfg.OnMessage != nil {
			// Called on the channel's reader: a slow handler holds this
			// viewer's channel (SCTP flow control pushes back on it).
			r.cfg.OnMessage(Message{ClientID: p.id, Label: dc.Label(), Data: msg.Data, Text: msg.IsString, Time: time.Now()})
		}
	})
}

// readTrack reads one remote track of a viewer until it ends: audio goes
// to the viewer's TalkbackSink (if the master accepts talk-back), anything
// else is read and dropped (pion's interceptors need it read).
func (r *run) readTrack(p *peer, t *webrtc.TrackRemote) {
	var sink TalkbackSink
	if t.Kind() == webrtc.RTPCodecTypeAudio && r.cfg.Talkback != nil {
		s, err := r.cfg.Talkback(p.id)
		switch {
		case errors.Is(err, ErrTalkbackBusy):
			r.log.Info("the viewer's talk-back is dropped: another viewer is talking", "viewer", p.id)
		case err != nil:
			r.log.Warn("cannot take the viewer's talk-back audio", "viewer", p.id, "err", err)
		default:
			sink = s
		}
	}
	talking := false
	stopTalk := func() {
		if talking {
			talking = false
			p.forward(r.peerEvents, peerEvent{p: p, tw: &twoWayNote{kind: EventTalkStopped}})
		}
	}
	defer func() {
		stopTalk()
		if sink != nil {
			if err := sink.Close(); err != nil {
				r.log.Warn("finishing the viewer's talk-back", "viewer", p.id, "err", err)
			}
		}
	}()
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			// While talking, a read deadline talkIdle after the last
			// packet ends the talk (a push-to-talk release sends
			// nothing more on a track that stays open).
			var ne net.Error
			if talking && errors.As(err, &ne) && ne.Timeout() {
				stopTalk()
				if err := t.SetReadDeadline(time.Time{}); err == nil {
					continue
				}
			}
			return
		}
		if sink == nil {
			continue
		}
		if len(pkt.Payload) == 0 {
			continue
		}
		if err := sink.WriteRTP(pkt); err != nil {
			r.log.Warn("writing the viewer's talk-back failed; dropping the rest", "viewer", p.id, "err", err)
			_ = sink.Close()
			sink = nil
			continue
		}
		if !talking {
			talking = true
			p.forward(r.peerEvents, peerEvent{p: p, tw: &twoWayNote{kind: EventTalkStarted}})
		}
		if err := t.SetReadDeadline(time.Now().Add(talkIdle)); err != nil {
			r.log.Debug("cannot watch the viewer's talk-back for pauses", "viewer", p.id, "err", err)
		}
	}
}

// onTwoWayNote reports a talk-back or data channel change (loop).
func (r *run) onTwoWayNote(p *peer, n *twoWayNote) {
	switch n.kind {
	case EventTalkStarted:
		r.log.Info("viewer talking", "viewer", p.id)
	case EventTalkStopped:
		r.log.Info("viewer stopped talking", "viewer", p.id)
	case EventDataChannelOpened:
		r.log.Info("viewer opened a data channel", "viewer", p.id, "label", n.label)
	}
	r.emit(Event{Kind: n.kind, ClientID: p.id, Reason: n.label})
}

// Send sends a binary message to a viewer on its newest open data
// channel. It blocks while that channel has over 1 MiB buffered
// (back-pressure) until it drains, ctx ends or the channel closes. Errors
// wrap ErrNoViewer, ErrNoDataChannel or ErrMessageTooLarge.
func (m *Master) Send(ctx context.Context, clientID string, data []byte) error {
	return m.send(ctx, clientID, data, false)
}

// SendText is Send for a text (UTF-8) message.
func (m *Master) SendText(ctx context.Context, clientID, text string) error {
	return m.send(ctx, clientID, []byte(text), true)
}

func (m *Master) send(ctx context.Context, clientID string, data []byte, text bool) error {
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d: split it into smaller messages", ErrMessageTooLarge, len(data), MaxMessageSize)
	}
	p := m.peers.lookup(clientID)
	if p == nil {
		return fmt.Errorf("%w: %q", ErrNoViewer, clientID)
	}
	p.tw.mu.Lock()
	var dc *webrtc.DataChannel
	var low chan struct{}
	if n := len(p.tw.dcs); n > 0 {
		dc = p.tw.dcs[n-1]
		low = p.tw.low[dc]
	}
	p.tw.mu.Unlock()
	if dc == nil {
		return fmt.Errorf("%w: viewer %s", ErrNoDataChannel, clientID)
	}
	for dc.BufferedAmount() > sendHighWater {
		t := time.NewTimer(100 * time.Millisecond) // re-check: the channel may close
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-low:
		case <-t.C:
		}
		t.Stop()
		if dc.ReadyState() != webrtc.DataChannelStateOpen {
			return fmt.Errorf("%w: viewer %s: the channel closed", ErrNoDataChannel, clientID)
		}
	}
	var err error
	if text {
		err = dc.SendText(string(data))
	} else {
		err = dc.Send(data)
	}
	if err != nil {
		return fmt.Errorf("%w: viewer %s: %w", ErrNoDataChannel, clientID, err)
	}
	return nil
}

// DataViewers returns the client ids of the viewers with an open data
// channel, sorted.
func (m *Master) DataViewers() []string {
	var out []string
	for _, v := range m.Viewers() {
		p := m.peers.lookup(v.ClientID)
		if p == nil {
			continue
		}
		p.tw.mu.Lock()
		if len(p.tw.dcs) > 0 {
			out = append(out, v.ClientID)
		}
		p.tw.mu.Unlock()
	}
	return out
}

// receiveOnly rewrites an answer so that it receives only what the master
// takes: never the viewer's video, its audio only with Config.Talkback,
// and a data channel only with Config.OnMessage or EchoData (pion answers a send-receive offer as send-receive as soon as a track is
// added; the KVS C SDK and browsers then send, for nothing).
func (r *run) receiveOnly(answer string) (string, error) {
	out, err := rtc.WithoutReceiving(answer, "video")
	if err == nil && r.cfg.Talkback == nil {
		out, err = rtc.WithoutReceiving(out, "audio")
	}
	if err == nil && !r.cfg.acceptsData() {
		out, err = rtc.Rejecting(out, "application")
	}
	return out, err
}
