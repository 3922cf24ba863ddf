package doctor

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
)

// SeedReason returns the number (1-9) and wording of a cause in the blog
// post's list of reasons the answer does not come, or 0 and "" for a cause
// the post does not list (the master is absent, clock skew, ...). The
// wording is package cause's (Cause.SeedReason).
func SeedReason(c cause.Cause) (int, string) { return c.SeedReason() }

// verdict concludes from the checks: the first failure names the cause,
// else the first finding.
func verdict(checks []Check) Verdict {
	first := -1
	for i, c := range checks {
		if c.Status == StatusFail {
			first = i
			break
		}
		if c.Status == StatusWarn && first < 0 {
			first = i
		}
	}
	if first >= 0 {
		c := checks[first]
		v := Verdict{Cause: c.Cause, Check: c.Name, Advice: c.Advice}
		n, text := SeedReason(c.Cause)
		v.SeedReason = n
		v.Summary = fmt.Sprintf("%s: %s", c.Cause, c.Detail)
		if n > 0 {
			v.Summary = fmt.Sprintf("%s (the post's reason %d: %s): %s", c.Cause, n, text, c.Detail)
		}
		return v
	}
	v := Verdict{OK: true, Summary: "every check passed"}
	for _, c := range checks {
		if c.Name == CheckMedia && c.Status == StatusPass {
			v.Summary = "every check passed: video arrives from the master"
		}
	}
	return v
}

// WriteText writes the report for people: one block per check, then the
// verdict.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "kvsrtc doctor: channel %s, region %s\n\n", r.Channel, r.Region)
	for _, c := range r.Checks {
		WriteCheck(w, c)
	}
	fmt.Fprintln(w)
	if r.Verdict.OK {
		fmt.Fprintf(w, "VERDICT: OK: %s (%v)\n", r.Verdict.Summary, r.Duration.Round(time.Millisecond))
		return
	}
	fmt.Fprintf(w, "VERDICT: %s\n", r.Verdict.Summary)
	if r.Verdict.Advice != "" {
		fmt.Fprintf(w, "WHAT TO DO: %s\n", r.Verdict.Advice)
	}
}

// WriteCheck writes one check as WriteText does.
func WriteCheck(w io.Writer, c Check) {
	mark := map[Status]string{StatusPass: "PASS", StatusWarn: "WARN", StatusFail: "FAIL", StatusSkip: "SKIP"}[c.Status]
	fmt.Fprintf(w, "[%s] %-12s %8s  %s\n", mark, c.Name, c.Duration.Round(time.Millisecond), c.Title)
	for _, f := range c.Evidence {
		fmt.Fprintf(w, "       %s: %s\n", f.Key, formatValue(f.Value))
	}
	if c.Detail != "" {
		fmt.Fprintf(w, "       -> %s\n", c.Detail)
	}
}

func formatValue(v any) string {
	switch x := v.(type) {
	case []string:
		return strings.Join(x, ", ")
	case map[string]int:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, x[k]))
		}
		return strings.Join(parts, " ")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%v", k, x[k]))
		}
		return strings.Join(parts, " ")
	}
	return fmt.Sprint(v)
}
