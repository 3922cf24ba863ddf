package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// doctorJSON is the part of kvsrtc doctor --json the tests read.
type doctorJSON struct {
	Channel string
	Checks  []struct {
		Name   string
		Status string
		Cause  string
	}
	Verdict struct {
		OK         bool
		Cause      string
		SeedReason int
		Check      string
		Advice     string
	}
}

func runDoctorCLI(t *testing.T, args ...string) (int, doctorJSON, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), append([]string{"doctor", "--loopback-only", "--answer-wait", "2s", "--json"}, args...), nil, &stdout, &stderr)
	var rep doctorJSON
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("exit %d, stdout is not the JSON report (%v):\n%s\nstderr:\n%s", code, err, stdout.String(), stderr.String())
	}
	return code, rep, stderr.String()
}

func TestDoctorCommand(t *testing.T) {
	startLocal(t, rtc.CodecH264)

	t.Run("healthy channel", func(t *testing.T) {
		code, rep, stderr := runDoctorCLI(t, "--channel", "cam")
		if code != 0 || !rep.Verdict.OK || len(rep.Checks) != 11 {
			t.Fatalf("exit %d, %+v\n%s", code, rep, stderr)
		}
		for _, c := range rep.Checks {
			if c.Status != "pass" {
				t.Fatalf("%s: %s", c.Name, c.Status)
			}
		}
	})
	t.Run("unknown channel", func(t *testing.T) {
		code, rep, _ := runDoctorCLI(t, "--channel", "nope")
		if code != 1 || rep.Verdict.Cause != "channel-not-found" || rep.Verdict.SeedReason != 2 || rep.Verdict.Check != "channel" || rep.Verdict.Advice == "" {
			t.Fatalf("exit %d, %+v", code, rep.Verdict)
		}
	})
	t.Run("client id outside the rules", func(t *testing.T) {
		code, rep, _ := runDoctorCLI(t, "--channel", "cam", "--client-id", "AWS_viewer")
		if code != 1 || rep.Verdict.Cause != "client-id" || rep.Verdict.SeedReason != 3 {
			t.Fatalf("exit %d, %+v", code, rep.Verdict)
		}
	})
	t.Run("text report", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := Main(t.Context(), []string{"doctor", "--channel", "cam", "--loopback-only"}, nil, &stdout, &stderr)
		out := stdout.String()
		if code != 0 || !strings.Contains(out, "[PASS] media") || !strings.Contains(out, "VERDICT: OK") {
			t.Fatalf("exit %d:\n%s\n%s", code, out, stderr.String())
		}
	})
}

func TestDoctorUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"doctor"},
		{"doctor", "--channel", "a", "--channel-arn", "arn:aws:kinesisvideo:us-west-2:1:channel/a/1"},
		{"doctor", "--channel", "a", "--codec", "H265"},
		{"doctor", "--channel", "a", "--answer-wait", "-1s"},
		{"doctor", "--channel", "a", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(t.Context(), args, nil, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}
