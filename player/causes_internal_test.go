package player

import (
	"testing"

	"github.com/kvsrtc/kvsrtc/cause"
)

// TestEveryCauseHasPageWording: every cause of package cause, and the
// player's own, has a title, a message and advice for the page, and is a
// known /metrics label.
func TestEveryCauseHasPageWording(t *testing.T) {
	all := append(cause.All(), CauseUnauthorized, CauseNotServed, CauseICEFailed, CauseBadRequest, CauseNotAllowed)
	for _, c := range all {
		d := diagnose(c, "cam", "us-west-2", 2, 0, nil)
		if d.Cause != c || d.Title == "" || d.Message == "" || d.Advice == "" {
			t.Errorf("%s: %+v", c, d)
		}
		if normCause(string(c)) != c {
			t.Errorf("%s is not a known cause of the page", c)
		}
	}
	if normCause("made-up") != "other" {
		t.Error("an unknown page cause is not \"other\"")
	}
}
