package player

import (
	"testing"

	"github.com/kvsrtc/kvsrtc/cause"
)

// TestStorageCausesHaveWords: the storage path's causes have their own
// words on the page (not the generic "Connection failed").
func TestStorageCausesHaveWords(t *testing.T) {
	for _, c := range []cause.Cause{cause.StorageNotConfigured, cause.StreamMissing, cause.StorageFull, cause.NoStorageOffer} {
		d := diagnoseStorage(c, "cam", "us-west-2", 2, 0, nil)
		if d.Cause != c || d.Title == "" || d.Title == "Connection failed" || d.Message == "" || d.Advice == "" {
			t.Errorf("%s: %+v", c, d)
		}
		if normCause(string(c)) != c {
			t.Errorf("%s is not a known cause of the page", c)
		}
	}
	if d := diagnoseStorage(cause.NoAnswer, "cam", "us-west-2", 0, 0, nil); d != diagnose(cause.NoAnswer, "cam", "us-west-2", 0, 0, nil) {
		t.Errorf("another cause is not diagnose's: %+v", d)
	}
}
