package master

import (
	"testing"
	"time"
)

// TestFailureWindow: the storage link gives up at the 5th failure within
// 10 minutes, as the JS SDK does; older failures do not count.
func TestFailureWindow(t *testing.T) {
	var w failureWindow
	t0 := time.Unix(1_000_000, 0)
	for i := 1; i <= 4; i++ {
		if n := w.add(t0.Add(time.Duration(i) * time.Minute)); n != i {
			t.Fatalf("failure %d counted as %d", i, n)
		}
	}
	// 11 min after the first: that one has left the window.
	if n := w.add(t0.Add(11 * time.Minute)); n != 4 || n >= storageMaxFailures {
		t.Fatalf("after the window slid: %d", n)
	}
	if n := w.add(t0.Add(11*time.Minute + time.Second)); n != storageMaxFailures {
		t.Fatalf("5 failures within 10 minutes counted as %d", n)
	}
}
