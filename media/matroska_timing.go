package media

import "time"

// trackTiming maps the media time of one RTP stream (one SSRC) of a track
// to wall-clock time and to the recording's timeline. A viewer that
// reconnects gets new RTP streams, whose times start again at 0: each
// starts a new trackTiming, placed after what was already recorded.
type trackTiming struct {
	set     bool
	ssrc    uint32
	base    time.Duration // PTS of the stream's first recorded frame
	off     time.Duration // recording time of PTS base
	first   time.Time     // arrival of that frame
	last    time.Time     // arrival of the latest frame
	arrival time.Time     // earliest arrival minus media time since base
	sender  time.Time     // sender's time of media time base (zero without SR)
}

// observe updates the mapping with f (whose Arrival is set) and returns
// f's media time since the stream's first frame.
func (t *trackTiming) observe(f Frame) time.Duration {
	if !t.set {
		t.set, t.ssrc, t.base, t.first = true, f.SSRC, f.PTS, f.Arrival
	}
	rel := f.PTS - t.base
	if a := f.Arrival.Add(-rel); t.arrival.IsZero() || a.Before(t.arrival) {
		t.arrival = a
	}
	if !f.SenderTime.IsZero() {
		t.sender = f.SenderTime.Add(-rel)
	}
	t.last = f.Arrival
	return rel
}
