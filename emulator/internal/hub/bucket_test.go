package hub

import (
	"testing"
	"time"
)

func TestBucketClockMovedBack(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	b := newBucket(3, 3, t0)
	for range 3 {
		if !b.allow(t0) {
			t.Fatal("burst refused")
		}
	}
	back := t0.Add(-10 * time.Minute)
	if b.allow(back) {
		t.Fatal("empty bucket allowed a token")
	}
	// One second after the clock was moved back, the bucket has refilled as
	// usual instead of waiting ten minutes for the old time to return.
	if !b.allow(back.Add(time.Second)) {
		t.Fatal("bucket stuck after the clock moved back")
	}
}
