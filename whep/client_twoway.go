package whep

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// Message is a data channel message from the server (the camera, through
// a relay with relay.Config.Data).
type Message struct {
	// Label is the data channel's label.
	Label string
	// Data is the message.
	Data []byte
	// Text reports a text (UTF-8) message rather than a binary one.
	Text bool
}

// Errors of Send, SendText and Receive.
var (
	// ErrNoDataChannel: the client was dialed without ClientConfig.Data.
	ErrNoDataChannel = errors.New("whep: no data channel (set ClientConfig.Data)")
	// ErrMessageTooLarge: a message over MaxMessageSize.
	ErrMessageTooLarge = errors.New("whep: data channel message too large")
	// ErrClientClosed: the client is closed.
	ErrClientClosed = errors.New("whep: the client is closed")
)

// MaxMessageSize is the largest data channel message Send takes (64 KiB,
// what a relay forwards).
const MaxMessageSize = rtc.MaxMessageSize

// messageQueue is how many received messages wait for Receive before the
// data channel is held (back-pressure).
const messageQueue = 256

// setupTwoWay adds the talk-back track and the data channel, before the
// offer.
func (c *Client) setupTwoWay() error {
	if c.cfg.Talk != nil {
		acap, err := rtc.Capability(rtc.CodecOpus)
		if err != nil {
			return err
		}
		track, err := webrtc.NewTrackLocalStaticSample(acap, "talkback", "kvsrtc-whep")
		if err != nil {
			return fmt.Errorf("whep: talk-back track: %w", err)
		}
		dir := webrtc.RTPTransceiverDirectionSendonly
		if c.cfg.Audio {
			dir = webrtc.RTPTransceiverDirectionSendrecv
		}
		tr, err := c.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: dir})
		if err != nil {
			return fmt.Errorf("whep: adding the talk-back transceiver: %w", err)
		}
		c.talkTrack = track
		c.wg.Go(func() { media.ReadSenderRTCP(tr.Sender(), nil) })
	}
	if !c.cfg.Data {
		return nil
	}
	dc, err := c.pc.CreateDataChannel(rtc.DataChannelLabel, nil)
	if err != nil {
		return fmt.Errorf("whep: creating the data channel: %w", err)
	}
	c.dc = dc
	dc.OnOpen(func() { c.dcOnce.Do(func() { close(c.dcOpen) }) })
	dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		select {
		case c.msgs <- Message{Label: dc.Label(), Data: msg.Data, Text: msg.IsString}:
		case <-c.ctx.Done():
		}
	})
	return nil
}

// startTalk starts sending ClientConfig.Talk, once, when the connection
// is up.
func (c *Client) startTalk() {
	if c.talkTrack == nil {
		return
	}
	c.talkOnce.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.done {
			return
		}
		c.wg.Go(func() {
			for {
				smp, err := c.cfg.Talk.ReadSample(c.ctx)
				if err != nil {
					if c.ctx.Err() == nil && !errors.Is(err, io.EOF) {
						c.log.Warn("whep: the talk-back source failed; talk-back stops", "err", err)
					}
					return
				}
				if err := c.talkTrack.WriteSample(smp.Sample); err != nil {
					c.log.Debug("whep: writing talk-back", "err", err)
					continue
				}
				c.talkPackets.Add(1)
			}
		})
	})
}

// DataChannel returns the client's data channel (nil without
// ClientConfig.Data), for what Send does not do.
func (c *Client) DataChannel() *webrtc.DataChannel { return c.dc }

// TalkPackets returns how many talk-back packets the client has sent.
func (c *Client) TalkPackets() int64 { return c.talkPackets.Load() }

// Send sends a binary message on the data channel, waiting until it is
// open or ctx ends. Errors: ErrNoDataChannel, ErrMessageTooLarge,
// ErrClientClosed, ctx.Err() or the data channel's.
func (c *Client) Send(ctx context.Context, data []byte) error { return c.send(ctx, data, false) }

// SendText is Send for a text (UTF-8) message.
func (c *Client) SendText(ctx context.Context, text string) error {
	return c.send(ctx, []byte(text), true)
}

func (c *Client) send(ctx context.Context, data []byte, text bool) error {
	if c.dc == nil {
		return ErrNoDataChannel
	}
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, len(data), MaxMessageSize)
	}
	select {
	case <-c.dcOpen:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClientClosed
	}
	var err error
	if text {
		err = c.dc.SendText(string(data))
	} else {
		err = c.dc.Send(data)
	}
	if err != nil {
		return fmt.Errorf("whep: data channel send: %w", err)
	}
	return nil
}

// Receive returns the next data channel message, waiting until one
// arrives, ctx ends or the client closes (ErrClientClosed). Messages wait
// in a queue of 256; while it is full the data channel is not read.
func (c *Client) Receive(ctx context.Context) (Message, error) {
	if c.dc == nil {
		return Message{}, ErrNoDataChannel
	}
	select {
	case m := <-c.msgs:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	case <-c.ctx.Done():
		return Message{}, ErrClientClosed
	}
}
