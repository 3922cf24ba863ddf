package viewer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// Talk back to a doorbell with a tone and send it a command over the data
// channel, in the same offer as the video.
func ExampleSession_Send() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctl, err := control.New(ctx, control.Config{Region: "us-west-2", Logger: logger})
	if err != nil {
		logger.Error("control plane", "err", err)
		return
	}
	tone, err := media.NewTestSource(rtc.CodecOpus, media.SourceConfig{}) // or media.OpenFile("talk.ogg", ...)
	if err != nil {
		logger.Error("tone", "err", err)
		return
	}
	s, err := viewer.New(viewer.Config{Channel: "front-door", Control: ctl, Talk: tone, Data: true, Logger: logger,
		OnEvent: func(ev viewer.Event) {
			if ev.Declined != nil {
				logger.Warn("declined", "err", ev.Declined) // video goes on
			}
		}})
	if err != nil {
		tone.Close()
		logger.Error("viewer", "err", err)
		return
	}
	go func() {
		if err := s.SendText(ctx, `{"pan": -10}`); err != nil { // waits for the open channel
			logger.Error("send", "err", err)
			return
		}
		if msg, err := s.Receive(ctx); err == nil {
			fmt.Println(string(msg.Data))
		}
		cancel()
	}()
	_ = s.Run(ctx)
}
