package hub

import "time"

// bucket is a token bucket driven by an explicit clock (Config.Now). It is
// not safe for concurrent use; its owner's lock guards it.
type bucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) bucket {
	return bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

func (b *bucket) refill(now time.Time) {
	switch el := now.Sub(b.last); {
	case el > 0:
		b.tokens = min(b.burst, b.tokens+el.Seconds()*b.rate)
		b.last = now
	case el < 0:
		// The service clock was moved back (a skew fault): restart the
		// refill from now instead of refusing until the old time returns.
		b.last = now
	}
}

// allow takes one token if there is one.
func (b *bucket) allow(now time.Time) bool {
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// full reports whether the bucket has refilled completely, i.e. forgetting
// it would not let anyone past the limit.
func (b *bucket) full(now time.Time) bool {
	b.refill(now)
	return b.tokens >= b.burst-1e-9
}
