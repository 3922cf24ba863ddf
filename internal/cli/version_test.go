package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/internal/buildinfo"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/rtc"
)

func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out, errb testutil.Buffer
		if code := Main(context.Background(), args, nil, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d, stderr %s", args, code, errb.String())
		}
		s := out.String()
		for _, w := range []string{"kvsrtc ", "go ", buildinfo.PionModule + " ", buildinfo.AWSSDKModule + " "} {
			if !strings.Contains(s, w) {
				t.Errorf("%v: output lacks %q:\n%s", args, w, s)
			}
		}
	}
	var out, errb testutil.Buffer
	if code := Main(context.Background(), []string{"version", "--json"}, nil, &out, &errb); code != 0 {
		t.Fatalf("version --json: exit %d, stderr %s", code, errb.String())
	}
	var in buildinfo.Info
	if err := json.Unmarshal([]byte(out.String()), &in); err != nil {
		t.Fatalf("version --json: %v\n%s", err, out.String())
	}
	if in != buildinfo.Get() {
		t.Fatalf("version --json = %+v, want %+v", in, buildinfo.Get())
	}
	if code := Main(context.Background(), []string{"version", "stray"}, nil, &out, &errb); code != 2 {
		t.Errorf("version stray: exit %d, want 2", code)
	}
}

// TestViewJSONSummaryCarriesVersion checks that the --json summary names
// the build, so that a saved run says what produced it.
func TestViewJSONSummaryCarriesVersion(t *testing.T) {
	startLocal(t, rtc.CodecH264)
	var stdout, stderr testutil.Buffer
	code := Main(t.Context(), []string{"view", "--channel", "cam", "--loopback-only", "--duration", "300ms", "--json"}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var last struct {
		Event   string
		Version buildinfo.Info
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Event != "summary" {
		t.Fatalf("last line is not the summary: %q (%v)", lines[len(lines)-1], err)
	}
	if last.Version != buildinfo.Get() {
		t.Fatalf("summary version %+v, want %+v", last.Version, buildinfo.Get())
	}
}
