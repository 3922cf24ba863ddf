package master_test

import (
	"context"
	"log/slog"
	"os"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// A doorbell: record what each viewer says, and answer its data channel
// messages (a pan-tilt-zoom command, say) on the same channel.
func ExampleRecordTalkback() {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctl, err := control.New(ctx, control.Config{Region: "us-west-2", Logger: logger})
	if err != nil {
		logger.Error("control plane", "err", err)
		return
	}
	talkback, err := master.RecordTalkback("talkback") // talkback/talkback-<client id>-<time>.ogg
	if err != nil {
		logger.Error("talk-back", "err", err)
		return
	}
	video, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		logger.Error("video", "err", err)
		return
	}
	var m *master.Master
	m, err = master.New(master.Config{
		Channel: "front-door", Control: ctl, Video: video, Logger: logger,
		Talkback: talkback,
		OnMessage: func(msg master.Message) {
			logger.Info("command", "viewer", msg.ClientID, "text", string(msg.Data))
			_ = m.SendText(ctx, msg.ClientID, "ok") // m is set: OnMessage runs only within Run
		},
		OnEvent: func(ev master.Event) {
			if ev.Kind == master.EventTalkStarted {
				logger.Info("talking", "viewer", ev.ClientID)
			}
		},
	})
	if err != nil {
		video.Close()
		logger.Error("master", "err", err)
		return
	}
	_ = m.Run(ctx)
}
