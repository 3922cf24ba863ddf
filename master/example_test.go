package master_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// Serve the built-in test pattern and tone on channel "demo" until Ctrl-C.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ctl, err := control.New(ctx, control.Config{Region: "us-west-2", Logger: logger})
	if err != nil {
		logger.Error("control plane", "err", err)
		return
	}
	video, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		logger.Error("video", "err", err)
		return
	}
	audio, err := media.NewTestSource(rtc.CodecOpus, media.SourceConfig{})
	if err != nil {
		video.Close()
		logger.Error("audio", "err", err)
		return
	}
	m, err := master.New(master.Config{
		Channel: "demo",
		Control: ctl,
		Video:   video,
		Audio:   audio,
		Logger:  logger,
		OnEvent: func(ev master.Event) {
			if ev.Kind == master.EventViewerFailed {
				logger.Warn("viewer not served", "viewer", ev.ClientID, "err", ev.Err)
			}
		},
	})
	if err != nil {
		video.Close()
		audio.Close()
		logger.Error("config", "err", err)
		return
	}
	if err := m.Run(ctx); err != nil { // closes the sources
		logger.Error("master", "err", err)
	}
}
