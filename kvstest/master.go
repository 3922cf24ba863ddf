package kvstest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// readyTimeout bounds how long StartMaster waits for the master to be
// ready: generous, for slow and busy machines.
const readyTimeout = 30 * time.Second

// MasterOptions configures a master started by Env.StartMaster or
// Options.Master.
type MasterOptions struct {
	// Channel is the signaling channel's name or ARN; required.
	Channel string
	// Video is the test pattern's codec, rtc.CodecH264 (default) or
	// rtc.CodecVP8.
	Video rtc.Codec
	// Audio also sends the Opus test tone.
	Audio bool
	// Logger receives the master's log; nil discards it.
	Logger *slog.Logger
	// Configure, if set, changes the master's configuration last (for
	// example timeouts, MaxViewers or OnEvent; an OnEvent set here is
	// still called).
	Configure func(*master.Config)
	// IgnoreRunError keeps the test's cleanup from reporting an error
	// returned by the master's Run, for tests that make it fail on
	// purpose. Stop returns the error either way.
	IgnoreRunError bool
}

// Master is a master running in the background on the test's service.
type Master struct {
	// Master is the running master (Viewers...). Do not call its Run.
	Master *master.Master
	// Channel is MasterOptions.Channel.
	Channel string

	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, set before done is closed

	ignoreErr bool
}

// StartMaster runs a master with the built-in test pattern on
// opts.Channel, gathering loopback ICE candidates only, and waits until it
// is ready (connected to signaling). The test's cleanup stops it and
// reports an error from its Run unless opts.IgnoreRunError. It fails the
// test if the master cannot start or is not ready within 30 s.
func (e *Env) StartMaster(t testing.TB, opts MasterOptions) *Master {
	t.Helper()
	m, err := e.startMaster(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil && !opts.IgnoreRunError {
			t.Errorf("kvstest: master on %s: %v", opts.Channel, err)
		}
	})
	return m
}

func (e *Env) startMaster(opts MasterOptions) (*Master, error) {
	if opts.Channel == "" {
		return nil, fmt.Errorf("%w: MasterOptions.Channel is empty: set the channel's name or ARN", master.ErrInvalidConfig)
	}
	codec := opts.Video
	if codec == "" {
		codec = rtc.CodecH264
	}
	video, err := media.NewTestSource(codec, media.SourceConfig{})
	if err != nil {
		return nil, fmt.Errorf("kvstest: master video: %w", err)
	}
	cfg := master.Config{
		Channel:      opts.Channel,
		Control:      e.Control,
		HTTPClient:   e.HTTPClient,
		Video:        video,
		LoopbackOnly: true,
		Logger:       opts.Logger,
	}
	if opts.Audio {
		if cfg.Audio, err = media.NewTestSource(rtc.CodecOpus, media.SourceConfig{}); err != nil {
			_ = video.Close()
			return nil, fmt.Errorf("kvstest: master audio: %w", err)
		}
	}
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	ready := make(chan struct{})
	var readyOnce sync.Once
	userEvent := cfg.OnEvent
	cfg.OnEvent = func(ev master.Event) {
		if ev.Kind == master.EventReady {
			readyOnce.Do(func() { close(ready) })
		}
		if userEvent != nil {
			userEvent(ev)
		}
	}
	m, err := master.New(cfg)
	if err != nil {
		closeSources(cfg)
		return nil, fmt.Errorf("kvstest: master: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Master{Master: m, Channel: opts.Channel, cancel: cancel, done: make(chan struct{}), ignoreErr: opts.IgnoreRunError}
	go func() {
		defer close(h.done)
		h.err = m.Run(ctx)
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return h, nil
	case <-h.done:
		return nil, fmt.Errorf("kvstest: master on %s ended before it was ready: %w", opts.Channel, h.err)
	case <-timer.C:
		return nil, errors.Join(fmt.Errorf("kvstest: master on %s not ready within %v", opts.Channel, readyTimeout), h.Stop())
	}
}

// closeSources closes the sources of a master that was never run (Run
// owns them otherwise).
func closeSources(cfg master.Config) {
	if cfg.Video != nil {
		_ = cfg.Video.Close()
	}
	if cfg.Audio != nil {
		_ = cfg.Audio.Close()
	}
}

// Stop stops the master and returns what its Run returned: nil when it
// stopped because of Stop or at the end of its video. It waits until Run
// has returned; calling it again returns the same.
func (m *Master) Stop() error {
	m.cancel()
	<-m.done
	return m.err
}

// Done is closed when the master's Run has returned, by Stop or on its own
// (then Stop returns why).
func (m *Master) Done() <-chan struct{} { return m.done }
