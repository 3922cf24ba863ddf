package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.1",
		Main:      debug.Module{Path: "github.com/kvsrtc/kvsrtc", Version: "v0.3.0"},
		Deps: []*debug.Module{
			{Path: PionModule, Version: "v4.2.26"},
			{Path: AWSSDKModule, Version: "v1.48.0"},
			{Path: "github.com/pion/ice/v4", Version: "v4.0.0"},
		},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
			{Key: "GOOS", Value: "linux"},
			{Key: "GOARCH", Value: "arm64"},
		},
	}
	in := fromBuildInfo(bi)
	want := Info{Version: "v0.3.0", Revision: "0123456789abcdef0123456789abcdef01234567", Time: "2026-12-01T10:00:00Z",
		Modified: true, GoVersion: "go1.26.1", Platform: "linux/arm64", Pion: "v4.2.26", AWSSDK: "v1.48.0"}
	if in != want {
		t.Fatalf("got %+v\nwant %+v", in, want)
	}
	if got := in.Short(); got != "v0.3.0 (0123456789ab+modified, 2026-12-01T10:00:00Z) go1.26.1" {
		t.Errorf("Short() = %q", got)
	}
	s := in.String()
	for _, w := range []string{"kvsrtc v0.3.0", "revision 0123456789abcdef0123456789abcdef01234567 (modified)", "2026-12-01T10:00:00Z",
		"go1.26.1 linux/arm64", PionModule + " v4.2.26", AWSSDKModule + " v1.48.0"} {
		if !strings.Contains(s, w) {
			t.Errorf("String() lacks %q:\n%s", w, s)
		}
	}
}

func TestFromBuildInfoBare(t *testing.T) {
	in := fromBuildInfo(&debug.BuildInfo{})
	if in.Version != "(devel)" || in.GoVersion == "" || in.Platform == "" {
		t.Fatalf("bare build info: %+v", in)
	}
	if !strings.Contains(in.String(), "(not linked)") {
		t.Errorf("missing libraries not marked:\n%s", in)
	}
}

func TestGetInTestBinary(t *testing.T) {
	in := Get()
	if in.Version == "" || in.GoVersion == "" {
		t.Fatalf("Get() = %+v", in)
	}
}
