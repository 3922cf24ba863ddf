package player

import (
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/internal/buildinfo"
)

// TestMetricsCarryVersion checks that /metrics names the build.
func TestMetricsCarryVersion(t *testing.T) {
	var b strings.Builder
	if err := newMetrics().write(&b); err != nil {
		t.Fatal(err)
	}
	bi := buildinfo.Get()
	want := `kvsrtc_build_info{version="` + escapeLabel(bi.Version) + `",revision="` + escapeLabel(bi.Revision) +
		`",goversion="` + escapeLabel(bi.GoVersion) + `",pion_webrtc="` + escapeLabel(bi.Pion) + `",aws_sdk_go_v2="` + escapeLabel(bi.AWSSDK) + `"} 1` + "\n"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("/metrics lacks %q:\n%s", want, b.String())
	}
}
