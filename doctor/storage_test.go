package doctor_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/doctor"
	"github.com/kvsrtc/kvsrtc/emulator"
)

// TestChannelMediaStorage: the channel check reports the channel's media
// storage configuration, and says when WebRTC ingestion is on that the
// checks test the peer-to-peer path only.
func TestChannelMediaStorage(t *testing.T) {
	_, ctl := start(t, emulator.Config{})
	check := func() doctor.Check {
		t.Helper()
		rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, AnswerWait: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range rep.Checks {
			if c.Name == doctor.CheckChannel {
				return c
			}
		}
		t.Fatal("no channel check")
		return doctor.Check{}
	}
	facts := func(c doctor.Check) string {
		var b strings.Builder
		for _, f := range c.Evidence {
			fmt.Fprintf(&b, "%s=%v ", f.Key, f.Value)
		}
		return b.String()
	}
	if c := check(); c.Status != doctor.StatusPass || !strings.Contains(facts(c), "mediaStorage=DISABLED") || c.Detail != "" {
		t.Fatalf("without storage: %s %q, evidence %s", c.Status, c.Detail, facts(c))
	}

	kv := ctl.Kinesisvideo()
	ctx := t.Context()
	st, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam-archive"), DataRetentionInHours: aws.Int32(24)})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := ctl.ResolveChannel(ctx, "cam")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.UpdateMediaStorageConfiguration(ctx, &kinesisvideo.UpdateMediaStorageConfigurationInput{
		ChannelARN:                aws.String(ch.ARN),
		MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusEnabled, StreamARN: st.StreamARN},
	}); err != nil {
		t.Fatal(err)
	}
	c := check()
	if c.Status != doctor.StatusPass || !strings.Contains(facts(c), "mediaStorage=ENABLED") ||
		!strings.Contains(facts(c), aws.ToString(st.StreamARN)) || !strings.Contains(c.Detail, "WebRTC ingestion is enabled") {
		t.Fatalf("with storage: %s %q, evidence %s", c.Status, c.Detail, facts(c))
	}
}
