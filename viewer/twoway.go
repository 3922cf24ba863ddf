package viewer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// This file is the viewer's two-way part: talk-back audio (Config.Talk)
// and the data channel (Config.Data). Both are set up in every attempt's
// offer, so they need no extra round trip, and come back by themselves
// with every reconnect; an ICE restart keeps them (same peer connection).

// Two-way errors; errors.Is matches them.
var (
	// ErrTalkbackDeclined: the master's answer does not receive the
	// viewer's audio (the audio section is rejected, send-only or
	// inactive on the master's side). Video is not affected; the session
	// goes on without talk-back. Reported in Event.Declined.
	ErrTalkbackDeclined = errors.New("viewer: the master declined talk-back audio")
	// ErrDataChannelDeclined: the master's answer has no data channel
	// section, or rejects it.
	// Send returns it; Event.Declined reports it. Video is not affected.
	ErrDataChannelDeclined = errors.New("viewer: the master does not accept a data channel")
	// ErrNoDataChannel: Send or Receive on a session without Config.Data.
	ErrNoDataChannel = errors.New("viewer: no data channel (set Config.Data; kvsrtc view --data)")
	// ErrMessageTooLarge: a message over MaxMessageSize.
	ErrMessageTooLarge = errors.New("viewer: data channel message too large")
	// ErrSessionEnded: Send or Receive after Run returned.
	ErrSessionEnded = errors.New("viewer: the session has ended")
)

// MaxMessageSize is the largest data channel message the viewer sends or
// accepts (64 KiB); larger incoming messages are dropped and logged.
const MaxMessageSize = rtc.MaxMessageSize

// Message is a data channel message from the master.
type Message struct {
	// Label is the data channel's label.
	Label string
	// Data is the message.
	Data []byte
	// Text reports a text (UTF-8) message rather than a binary one.
	Text bool
	// Time is when it arrived.
	Time time.Time
}

// receiveQueue is how many received messages wait for Receive before the
// data channel is held (back-pressure on the master).
const receiveQueue = 256

// Back-pressure of Send: above sendHighWater buffered bytes, Send waits
// until the channel drains to sendLowWater.
const (
	sendHighWater = 1 << 20
	sendLowWater  = 256 << 10
)

// twoWay is the session's two-way state, shared by its attempts.
type twoWay struct {
	talk *media.Broadcaster // nil without Config.Talk
	msgs chan Message
	done chan struct{} // closed when Run returns

	mu      sync.Mutex
	dc      *webrtc.DataChannel // the open data channel of the current attempt
	low     chan struct{}       // dc's buffer drained
	dataErr error               // the current answer declined the data channel
	changed chan struct{}       // closed (and replaced) when dc or dataErr change
	ended   bool

	talkPackets atomic.Int64
	sent        atomic.Int64
	received    atomic.Int64
}

func newTwoWay(cfg Config) *twoWay {
	tw := &twoWay{msgs: make(chan Message, receiveQueue), done: make(chan struct{}), changed: make(chan struct{})}
	if cfg.Talk != nil {
		tw.talk = media.NewBroadcaster(cfg.Talk, media.BroadcasterConfig{Logger: cfg.Logger})
	}
	return tw
}

// set changes the data channel state and wakes every waiting Send.
func (tw *twoWay) set(f func()) {
	tw.mu.Lock()
	f()
	close(tw.changed)
	tw.changed = make(chan struct{})
	tw.mu.Unlock()
}

// end marks the session over.
func (tw *twoWay) end() {
	tw.set(func() { tw.ended, tw.dc = true, nil })
	close(tw.done)
}

// runTalk reads the talk-back source for the session's lifetime; the
// attempts subscribe their tracks to it.
func (s *Session) runTalk(ctx context.Context) (stop func()) {
	if s.tw.talk == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := s.tw.talk.Run(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			s.log.Warn("the talk-back source failed; talk-back stops (video goes on)", "err", err)
		default:
			s.log.Info("the talk-back source ended")
		}
	}()
	return func() { cancel(); <-done }
}

// Send sends a binary message to the master on the data channel. It waits
// until the channel is open (across reconnects), and while over 1 MiB is
// buffered (back-pressure), until ctx ends. Errors: ErrNoDataChannel,
// ErrMessageTooLarge, ErrDataChannelDeclined, ErrSessionEnded, ctx.Err().
func (s *Session) Send(ctx context.Context, data []byte) error { return s.send(ctx, data, false) }

// SendText is Send for a text (UTF-8) message.
func (s *Session) SendText(ctx context.Context, text string) error {
	return s.send(ctx, []byte(text), true)
}

func (s *Session) send(ctx context.Context, data []byte, text bool) error {
	if !s.cfg.Data {
		return ErrNoDataChannel
	}
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d: split it into smaller messages", ErrMessageTooLarge, len(data), MaxMessageSize)
	}
	tw := s.tw
	for {
		tw.mu.Lock()
		dc, low, declined, ended, changed := tw.dc, tw.low, tw.dataErr, tw.ended, tw.changed
		tw.mu.Unlock()
		switch {
		case ended:
			return ErrSessionEnded
		case declined != nil:
			return declined
		case dc == nil:
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
			}
			continue
		}
		for dc.BufferedAmount() > sendHighWater && dc.ReadyState() == webrtc.DataChannelStateOpen {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-low:
			case <-changed:
			}
		}
		var err error
		if text {
			err = dc.SendText(string(data))
		} else {
			err = dc.Send(data)
		}
		if err == nil {
			tw.sent.Add(1)
			return nil
		}
		tw.mu.Lock()
		same := tw.dc == dc
		tw.mu.Unlock()
		if same && dc.ReadyState() == webrtc.DataChannelStateOpen {
			return fmt.Errorf("viewer: data channel send: %w", err)
		}
		// The channel closed under us (a reconnect): wait for the next.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Receive returns the next data channel message from the master, waiting
// until one arrives, ctx ends or the session ends (ErrSessionEnded once
// the queue is empty). Messages wait in a queue of 256; when it is full,
// the data channel is not read until Receive takes one (back-pressure).
func (s *Session) Receive(ctx context.Context) (Message, error) {
	if !s.cfg.Data {
		return Message{}, ErrNoDataChannel
	}
	select {
	case m := <-s.tw.msgs:
		return m, nil
	default:
	}
	select {
	case m := <-s.tw.msgs:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	case <-s.tw.done:
		select {
		case m := <-s.tw.msgs:
			return m, nil
		default:
			return Message{}, ErrSessionEnded
		}
	}
}

// attemptTwoWay is one attempt's two-way state (owned by its loop, but
// for what pion's callbacks touch through the channels).
type attemptTwoWay struct {
	track    *webrtc.TrackLocalStaticSample
	sender   *webrtc.RTPSender
	sub      *media.Subscription
	dc       *webrtc.DataChannel
	notes    chan twoWayNote
	answered bool // the first answer was checked
}

type twoWayNote struct {
	opened bool
	closed bool
}

// setupTwoWay adds the talk-back transceiver and the data channel to the
// attempt's peer connection, before its offer. With Talk, the audio
// section sends (and also receives with Config.Audio).
func (a *attemptRun) setupTwoWay() error {
	s := a.s
	a.tw.notes = make(chan twoWayNote, 4)
	if s.cfg.Talk != nil {
		acap, err := rtc.Capability(rtc.CodecOpus)
		if err != nil {
			return err
		}
		track, err := webrtc.NewTrackLocalStaticSample(acap, "talkback", "kvsrtc-viewer")
		if err != nil {
			return err
		}
		dir := webrtc.RTPTransceiverDirectionSendonly
		if s.cfg.Audio {
			dir = webrtc.RTPTransceiverDirectionSendrecv
		}
		tr, err := a.peer.PC.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: dir})
		if err != nil {
			return err
		}
		a.tw.track, a.tw.sender = track, tr.Sender()
		a.peer.Go(func(context.Context) { // RTCP for the sender's interceptors
			for {
				if _, _, err := tr.Sender().ReadRTCP(); err != nil {
					return
				}
			}
		})
	}
	if !s.cfg.Data {
		return nil
	}
	dc, err := a.peer.PC.CreateDataChannel(rtc.DataChannelLabel, nil)
	if err != nil {
		return err
	}
	a.tw.dc = dc
	actx := a.actx
	note := func(n twoWayNote) {
		select {
		case a.tw.notes <- n:
		case <-actx.Done():
		}
	}
	low := make(chan struct{}, 1)
	dc.SetBufferedAmountLowThreshold(sendLowWater)
	dc.OnBufferedAmountLow(func() {
		select {
		case low <- struct{}{}:
		default:
		}
	})
	dc.OnOpen(func() {
		s.tw.set(func() { s.tw.dc, s.tw.low = dc, low })
		note(twoWayNote{opened: true})
	})
	dc.OnClose(func() {
		s.tw.set(func() {
			if s.tw.dc == dc {
				s.tw.dc = nil
			}
		})
		if actx.Err() == nil {
			note(twoWayNote{closed: true})
		}
	})
	a.onMessages(dc)
	// Channels the master opens (the JS SDK's master sample sends on its
	// own "kvsDataChannel") are read too.
	a.peer.PC.OnDataChannel(a.onMessages)
	return nil
}

// onMessages queues a data channel's messages for Receive.
func (a *attemptRun) onMessages(dc *webrtc.DataChannel) {
	s, actx := a.s, a.actx
	dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		if len(msg.Data) > MaxMessageSize {
			s.log.Warn("dropping a data channel message over the size limit", "bytes", len(msg.Data), "limit", MaxMessageSize)
			return
		}
		m := Message{Label: dc.Label(), Data: msg.Data, Text: msg.IsString, Time: time.Now()}
		select {
		case s.tw.msgs <- m: // blocks while the queue is full: back-pressure
			s.tw.received.Add(1)
		case <-actx.Done():
		}
	})
}

// beforeAnswer removes the talk-back track when the master's answer
// rejects the audio section (port 0): pion would otherwise refuse the
// answer ("codec is not supported by remote") and with it the video.
func (a *attemptRun) beforeAnswer(answer string) {
	if a.tw.sender == nil || a.tw.answered {
		return
	}
	sum, err := rtc.Summarize(answer)
	if err != nil {
		return
	}
	for _, m := range sum.Media {
		if m.Kind == "audio" {
			if m.Port == 0 {
				if err := a.peer.PC.RemoveTrack(a.tw.sender); err != nil {
					a.s.log.Debug("removing the talk-back track", "err", err)
				}
				a.tw.sender = nil
			}
			return
		}
	}
}

// checkTwoWayAnswer reads what the master's answer accepted: it starts
// the talk-back track, or reports that talk-back or the data channel was
// declined (Event.Declined; video goes on).
func (a *attemptRun) checkTwoWayAnswer(answer string) {
	s := a.s
	if (s.cfg.Talk == nil && !s.cfg.Data) || a.tw.answered {
		return
	}
	a.tw.answered = true
	sum, err := rtc.Summarize(answer)
	if err != nil {
		return // applied already, so pion parsed it
	}
	var audio, app *rtc.MediaSummary
	for i := range sum.Media {
		switch m := &sum.Media[i]; m.Kind {
		case "audio":
			if audio == nil {
				audio = m
			}
		case "application":
			if app == nil {
				app = m
			}
		}
	}
	if s.cfg.Talk != nil {
		var why string
		switch {
		case audio == nil:
			why = "its answer has no audio section"
		case audio.Port == 0:
			why = "its answer rejects the audio section (no audio support)"
		case audio.Direction == "sendonly" || audio.Direction == "inactive":
			why = "its answer's audio section does not receive (" + audio.Direction + ")"
		}
		if why != "" {
			err := fmt.Errorf("%w: %s; video is not affected (kvsrtc master: --talkback-dir or --talkback-cmd)", ErrTalkbackDeclined, why)
			s.log.Warn("talk-back declined", "err", err)
			s.emit(Event{State: a.liveState(), Attempt: a.n, ClientID: a.clientID, Declined: err, Detail: err.Error()})
		} else {
			a.tw.sub = s.tw.talk.Subscribe(countingTrack{a.tw.track, &s.tw.talkPackets})
			s.log.Info("talk-back accepted by the master")
		}
	}
	if s.cfg.Data {
		s.tw.set(func() { s.tw.dataErr = nil })
		if app == nil || app.Port == 0 {
			a.declineData("its answer has no data channel section, or rejects it")
		}
	}
}

// declineData records that the master declined the data channel.
func (a *attemptRun) declineData(why string) {
	s := a.s
	err := fmt.Errorf("%w: %s; video is not affected (kvsrtc master: --data)", ErrDataChannelDeclined, why)
	s.tw.set(func() { s.tw.dataErr = err })
	s.log.Warn("data channel declined", "err", err)
	s.emit(Event{State: a.liveState(), Attempt: a.n, ClientID: a.clientID, Declined: err, Detail: err.Error()})
}

// onTwoWayNote handles a data channel change (loop). A channel the master
// closes is not used again; Send waits for the next attempt's.
func (a *attemptRun) onTwoWayNote(n twoWayNote) {
	switch {
	case n.opened:
		a.s.log.Info("data channel open", "clientId", a.clientID)
	case n.closed:
		a.s.log.Info("data channel closed by the master", "clientId", a.clientID)
	}
}

// teardownTwoWay stops the attempt's talk-back track and retires its data
// channel (loop, at teardown).
func (a *attemptRun) teardownTwoWay() {
	if a.tw.sub != nil {
		a.tw.sub.Unsubscribe()
		a.tw.sub = nil
	}
	if dc := a.tw.dc; dc != nil {
		a.s.tw.set(func() { // Send waits for the next attempt's channel
			if a.s.tw.dc == dc {
				a.s.tw.dc = nil
			}
		})
	}
}

// countingTrack counts the talk-back packets written.
type countingTrack struct {
	t *webrtc.TrackLocalStaticSample
	n *atomic.Int64
}

func (c countingTrack) WriteSample(smp pmedia.Sample) error {
	if err := c.t.WriteSample(smp); err != nil {
		return err
	}
	c.n.Add(1)
	return nil
}
