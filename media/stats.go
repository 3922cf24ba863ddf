package media

import (
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// DefaultStatsWindow is the sliding window FPS and bitrate are measured over.
const DefaultStatsWindow = 2 * time.Second

// Stats accumulates frame statistics of one track. It is a [Sink] and is
// safe for concurrent use.
type Stats struct {
	window time.Duration

	mu     sync.Mutex
	s      StatsSnapshot
	recent []statPoint // frames inside the window, oldest first
	head   int
}

type statPoint struct {
	at    time.Time
	bytes int
}

// StatsSnapshot is a copy of the statistics at one moment.
type StatsSnapshot struct {
	Codec          rtc.Codec
	Frames         int64
	Bytes          int64
	Keyframes      int64
	DroppedPackets int64

	// FPS and Bitrate (bits per second) cover the last window (or the time
	// since the first frame, if shorter), up to the snapshot.
	FPS     float64
	Bitrate float64

	// Width and Height are from the latest video keyframe that had them.
	Width, Height int

	FirstFrame    time.Time // arrival of the first frame; zero before it
	FirstKeyframe time.Time // arrival of the first keyframe; zero before it
	LastFrame     time.Time
}

// NewStats returns Stats measuring rates over window (0 means
// [DefaultStatsWindow]).
func NewStats(window time.Duration) *Stats {
	if window <= 0 {
		window = DefaultStatsWindow
	}
	return &Stats{window: window}
}

// WriteFrame records f. Frames without an Arrival time count as arriving now.
func (st *Stats) WriteFrame(f Frame) error {
	at := f.Arrival
	if at.IsZero() {
		at = time.Now()
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	s := &st.s
	if s.Codec == "" {
		s.Codec = f.Codec
	}
	s.Frames++
	s.Bytes += int64(len(f.Data))
	s.DroppedPackets += int64(f.DroppedPackets)
	if s.FirstFrame.IsZero() {
		s.FirstFrame = at
	}
	s.LastFrame = at
	if f.Keyframe {
		s.Keyframes++
		if s.FirstKeyframe.IsZero() {
			s.FirstKeyframe = at
		}
	}
	if f.Width > 0 && f.Height > 0 {
		s.Width, s.Height = f.Width, f.Height
	}
	st.recent = append(st.recent, statPoint{at: at, bytes: len(f.Data)})
	st.pruneLocked(at)
	return nil
}

// pruneLocked drops points older than the window before now, compacting
// the slice now and then so it does not grow without bound.
func (st *Stats) pruneLocked(now time.Time) {
	cut := now.Add(-st.window)
	for st.head < len(st.recent) && !st.recent[st.head].at.After(cut) {
		st.head++
	}
	if st.head > 64 && st.head*2 > len(st.recent) {
		n := copy(st.recent, st.recent[st.head:])
		st.recent = st.recent[:n]
		st.head = 0
	}
}

// Snapshot returns the statistics now.
func (st *Stats) Snapshot() StatsSnapshot {
	now := time.Now()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.pruneLocked(now)
	s := st.s
	if s.FirstFrame.IsZero() {
		return s
	}
	span := min(now.Sub(s.FirstFrame), st.window)
	if span <= 0 {
		return s
	}
	var bytes int
	for _, p := range st.recent[st.head:] {
		bytes += p.bytes
	}
	frames := len(st.recent) - st.head
	if span < st.window && frames > 1 {
		// Still filling the window: count intervals between frames
		// rather than frames, so the first frame does not inflate the rate.
		frames--
	}
	s.FPS = float64(frames) / span.Seconds()
	s.Bitrate = float64(bytes*8) / span.Seconds()
	return s
}
