package doctor_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/doctor"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/viewer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start runs an emulator with channel "cam" (and cfg's) and returns it
// and a control client for it.
func start(t *testing.T, cfg emulator.Config) (*emulator.Server, *control.Client) {
	t.Helper()
	return startEnv(t, cfg, nil)
}

// startWithMaster is start with a master (the H.264 test pattern) ready on
// channel "cam".
func startWithMaster(t *testing.T, cfg emulator.Config) (*emulator.Server, *control.Client) {
	t.Helper()
	return startEnv(t, cfg, &kvstest.MasterOptions{Channel: "cam", IgnoreRunError: true})
}

func startEnv(t *testing.T, cfg emulator.Config, m *kvstest.MasterOptions) (*emulator.Server, *control.Client) {
	t.Helper()
	cfg.Channels = append(cfg.Channels, "cam")
	env := kvstest.New(t, kvstest.Options{Emulator: cfg, Master: m})
	return env.Server, env.Control
}

func newControl(t *testing.T, srv *emulator.Server, secret string) *control.Client {
	t.Helper()
	c := srv.Credentials()
	ctl, err := control.New(t.Context(), control.Config{Region: srv.Region(), EndpointURL: srv.URL(), STUNURL: control.STUNNone,
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	return ctl
}

func TestEveryCheckPasses(t *testing.T) {
	_, ctl := startWithMaster(t, emulator.Config{})
	var seen []string
	rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true,
		OnCheck: func(c doctor.Check) { seen = append(seen, c.Name) }})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	want := []string{doctor.CheckCredentials, doctor.CheckClock, doctor.CheckChannel, doctor.CheckEndpoints, doctor.CheckICEServers,
		doctor.CheckTURN, doctor.CheckClientID, doctor.CheckSignaling, doctor.CheckMaster, doctor.CheckICE, doctor.CheckMedia}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("checks ran %v, want %v", seen, want)
	}
	for _, c := range rep.Checks {
		if c.Status != doctor.StatusPass {
			t.Fatalf("check %s: %s\n%s", c.Name, c.Status, text.String())
		}
	}
	if !rep.OK() || rep.Verdict.Cause != viewer.CauseNone || rep.ChannelARN == "" || !strings.HasPrefix(rep.ClientID, "kvsrtc-doctor-") {
		t.Fatalf("report %+v\n%s", rep.Verdict, text.String())
	}
	ev := func(name, key string) any {
		for _, f := range rep.Check(name).Evidence {
			if f.Key == key {
				return f.Value
			}
		}
		t.Fatalf("check %s has no %s evidence:\n%s", name, key, text.String())
		return nil
	}
	if ev(doctor.CheckCredentials, "account") != "123456789012" || ev(doctor.CheckMedia, "codec") != "H264" ||
		ev(doctor.CheckMedia, "resolution") != "640x360" || ev(doctor.CheckTURN, "relayAddress") == "" {
		t.Fatalf("evidence:\n%s", text.String())
	}
	if local := ev(doctor.CheckICE, "localCandidates").(map[string]int); local["host"] == 0 {
		t.Fatalf("no host candidate: %v", local)
	}

	// The JSON form carries the same.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Checks []struct {
			Name       string
			Status     string
			DurationMS float64 `json:"durationMs"`
			Evidence   map[string]any
		}
		Verdict struct{ OK bool }
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Checks) != len(want) || !back.Verdict.OK || back.Checks[0].Evidence["account"] != "123456789012" {
		t.Fatalf("JSON: %s", b)
	}
	t.Log("\n" + text.String())
}

func TestVerdicts(t *testing.T) {
	srv, ctl := start(t, emulator.Config{})
	t.Run("wrong secret", func(t *testing.T) {
		rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: newControl(t, srv, "wrong"), LoopbackOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() || rep.Verdict.Cause != viewer.CauseCredentials || rep.Verdict.SeedReason != 1 || rep.Verdict.Check != doctor.CheckCredentials {
			t.Fatalf("%+v", rep.Verdict)
		}
		if rep.Check(doctor.CheckMedia).Status != doctor.StatusSkip {
			t.Fatalf("media: %s", rep.Check(doctor.CheckMedia).Status)
		}
	})
	t.Run("no master", func(t *testing.T) {
		rep, err := doctor.Run(t.Context(), doctor.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, AnswerWait: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() || rep.Verdict.Cause != viewer.CauseNoAnswer || rep.Verdict.SeedReason != 0 {
			t.Fatalf("%+v", rep.Verdict)
		}
		if !errors.Is(rep.Check(doctor.CheckMaster).Err, viewer.ErrAnswerTimeout) {
			t.Fatal(rep.Check(doctor.CheckMaster).Err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	_, ctl := start(t, emulator.Config{})
	for _, cfg := range []doctor.Config{
		{Channel: "cam"},
		{Control: ctl},
		{Control: ctl, Channel: "bad name"},
		{Control: ctl, Channel: "arn:nope"},
		{Control: ctl, Channel: "cam", AnswerWait: -time.Second},
	} {
		if _, err := doctor.Run(t.Context(), cfg); !errors.Is(err, doctor.ErrInvalidConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

func TestSeedReasons(t *testing.T) {
	for cause, n := range map[viewer.Cause]int{
		viewer.CauseCredentials: 1, viewer.CauseChannelNotFound: 2, viewer.CauseClientID: 3, viewer.CauseClientIDReuse: 4,
		viewer.CauseThrottled: 5, viewer.CauseNetworkChange: 6, viewer.CauseBadOffer: 7, viewer.CauseChannelFull: 8,
		viewer.CauseICEExpired: 9, viewer.CauseNoAnswer: 0, viewer.CauseClockSkew: 0,
	} {
		got, text := doctor.SeedReason(cause)
		if got != n || (n > 0) != (text != "") {
			t.Errorf("SeedReason(%s) = %d %q, want %d", cause, got, text, n)
		}
	}
}

// The emulator answers STS GetCallerIdentity as AWS does, so that the
// credentials check works against it; with aws-sdk-go-v2's STS client.
func TestEmulatorSTS(t *testing.T) {
	srv, _ := start(t, emulator.Config{})
	c := srv.Credentials()
	client := func(secret string) *sts.Client {
		return sts.New(sts.Options{Region: srv.Region(), BaseEndpoint: aws.String(srv.URL()), Retryer: aws.NopRetryer{},
			Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, secret, "")})
	}
	out, err := client(c.SecretAccessKey).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.Account) != srv.AccountID() || !strings.HasPrefix(aws.ToString(out.Arn), "arn:aws:iam::"+srv.AccountID()+":") || aws.ToString(out.UserId) == "" {
		t.Fatalf("%+v", out)
	}
	var ae smithy.APIError
	if _, err := client("wrong").GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{}); !errors.As(err, &ae) || ae.ErrorCode() != "SignatureDoesNotMatch" {
		t.Fatalf("wrong secret: %v", err)
	}
	srv.SetClockSkew(-10 * time.Minute)
	defer srv.SetClockSkew(0)
	if _, err := client(c.SecretAccessKey).GetCallerIdentity(t.Context(), &sts.GetCallerIdentityInput{}); !errors.As(err, &ae) ||
		!strings.Contains(ae.ErrorMessage(), "Signature not yet current") {
		t.Fatalf("skewed: %v", err)
	}
}
