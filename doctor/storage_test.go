package doctor_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/doctor"
	"github.com/kvsrtc/kvsrtc/emulator"
)

// TestChannelMediaStorage: the channel check reports the channel's media
// storage configuration, and says when WebRTC ingestion is on; the storage
// check then joins the storage session as a viewer: with no camera in it,
// the session offers and connects but sends no video, which is a warning
// naming the missing JoinStorageSession.
func TestChannelMediaStorage(t *testing.T) {
	_, ctl := start(t, emulator.Config{})
	var rep *doctor.Report
	check := func() doctor.Check {
		t.Helper()
		var err error
		rep, err = doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, AnswerWait: 1,
			ConnectWait: 3 * time.Second, MediaWait: 2 * time.Second})
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
	if c := rep.Check(doctor.CheckStorage); c.Name != "" {
		t.Fatalf("a storage check without media storage: %+v", c)
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
	sc := rep.Check(doctor.CheckStorage)
	if sc.Status != doctor.StatusWarn || sc.Cause != cause.NoMedia || !strings.Contains(sc.Detail, "JoinStorageSession") ||
		!strings.Contains(facts(sc), "webrtcEndpoint=") {
		t.Fatalf("storage check without a camera: %s %s %q, evidence %s", sc.Status, sc.Cause, sc.Detail, facts(sc))
	}
}
