package doctor

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/cause"
)

// TestEveryCauseIsAFinding: for every cause of package cause, a check that
// fails (or warns) with it gives a kvsrtc doctor finding: a verdict naming
// the cause, the blog post's reason when it is one, the cause's advice,
// and a text report that says what to do.
func TestEveryCauseIsAFinding(t *testing.T) {
	for _, c := range cause.All() {
		for _, warn := range []bool{false, true} {
			d := &run{log: slog.New(slog.DiscardHandler), rep: &Report{Channel: "cam", Region: "us-west-2"}}
			k := d.begin(CheckMaster, "master: answers an offer")
			if warn {
				k.warn(c, "seen", c.Advice())
			} else {
				k.fail(c, nil, "seen", "") // "" takes the cause's advice
			}
			d.rep.Verdict = verdict(d.rep.Checks)
			v := d.rep.Verdict
			if v.OK || v.Cause != c || v.Check != CheckMaster || v.Advice == "" || v.Advice != c.Advice() {
				t.Errorf("%s (warn %v): verdict %+v", c, warn, v)
			}
			n, text := SeedReason(c)
			if v.SeedReason != n || !strings.HasPrefix(v.Summary, string(c)) || (n > 0 && !strings.Contains(v.Summary, text)) {
				t.Errorf("%s: summary %q, seed reason %d", c, v.Summary, v.SeedReason)
			}
			var b bytes.Buffer
			d.rep.WriteText(&b)
			if out := b.String(); !strings.Contains(out, "VERDICT: "+string(c)) || !strings.Contains(out, "WHAT TO DO: "+c.Advice()) {
				t.Errorf("%s: report\n%s", c, out)
			}
		}
	}
}
