package media

import (
	"sync"
	"sync/atomic"

	pmedia "github.com/pion/webrtc/v4/pkg/media"
)

// DefaultQueueSamples is the default QueueConfig.MaxSamples: four seconds
// of 30 fps video, more than a cached GOP of the usual one or two seconds.
const DefaultQueueSamples = 120

// QueueConfig configures a [QueuedWriter]. The zero value works.
type QueueConfig struct {
	// MaxSamples bounds the samples waiting to be written (0:
	// DefaultQueueSamples). A sample that finds the queue full is dropped
	// together with everything queued.
	MaxSamples int

	// OnDrop, if set, is called after samples were dropped, with how many,
	// from the writer's own goroutine (never from WriteSample, so it may
	// call back into a [Broadcaster]: a relay asks its [Subscription] for a
	// keyframe from here). It must not block for long.
	OnDrop func(n int)
}

// QueueStats counts what a [QueuedWriter] did.
type QueueStats struct {
	Written uint64 // samples handed to the underlying writer
	Bytes   uint64 // their payload bytes
	Dropped uint64 // samples dropped because the queue was full
	Errors  uint64 // writes the underlying writer refused
}

// QueuedWriter is a [SampleWriter] that queues samples for another writer
// (normally one viewer's *webrtc.TrackLocalStaticSample) and writes them
// from a goroutine of its own. WriteSample never blocks, so a
// [Broadcaster] feeding many viewers is never held back by one of them: a
// viewer that cannot keep up loses samples on its own queue (counted, and
// reported through QueueConfig.OnDrop), and the time they covered is
// skipped in its RTP clock so its stream stays in step with the source.
// Close stops the goroutine.
type QueuedWriter struct {
	w      SampleWriter
	max    int
	onDrop func(int)

	mu      sync.Mutex
	q       []pmedia.Sample
	dropped int // dropped since the last write (PrevDroppedPackets)
	notify  int // dropped since OnDrop was last called
	closed  bool

	wake chan struct{}
	done chan struct{}

	written, bytes, drops, errs atomic.Uint64
}

// NewQueuedWriter starts a QueuedWriter in front of w.
func NewQueuedWriter(w SampleWriter, cfg QueueConfig) *QueuedWriter {
	q := &QueuedWriter{
		w: w, max: cfg.MaxSamples, onDrop: cfg.OnDrop,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if q.max <= 0 {
		q.max = DefaultQueueSamples
	}
	go q.loop()
	return q
}

// WriteSample queues s. It returns [ErrClosed] after Close and nil
// otherwise, also when the queue was full and s was dropped.
func (q *QueuedWriter) WriteSample(s pmedia.Sample) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if len(q.q) >= q.max {
		n := len(q.q) + 1
		clear(q.q)
		q.q = q.q[:0]
		q.dropped += n
		q.notify += n
		q.drops.Add(uint64(n))
	} else {
		q.q = append(q.q, s)
	}
	select { // under mu: Close closes wake
	case q.wake <- struct{}{}:
	default:
	}
	q.mu.Unlock()
	return nil
}

// Stats returns the counts so far.
func (q *QueuedWriter) Stats() QueueStats {
	return QueueStats{Written: q.written.Load(), Bytes: q.bytes.Load(), Dropped: q.drops.Load(), Errors: q.errs.Load()}
}

// Close discards what is queued, stops the writer's goroutine and waits
// for it. Nothing is written to the underlying writer after Close
// returns. Safe to call more than once.
func (q *QueuedWriter) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		clear(q.q)
		q.q = nil
		close(q.wake)
	}
	q.mu.Unlock()
	<-q.done
}

func (q *QueuedWriter) loop() {
	defer close(q.done)
	var batch []pmedia.Sample
	for range q.wake {
		for {
			q.mu.Lock()
			if q.closed {
				q.mu.Unlock()
				return
			}
			batch = append(batch[:0], q.q...)
			clear(q.q)
			q.q = q.q[:0]
			skipped := q.dropped
			q.dropped = 0
			notify := q.notify
			q.notify = 0
			q.mu.Unlock()
			if notify > 0 && q.onDrop != nil {
				q.onDrop(notify)
			}
			if len(batch) == 0 {
				q.mu.Lock()
				q.dropped += skipped // skip that time before the next sample
				q.mu.Unlock()
				break
			}
			for i, s := range batch {
				if i == 0 && skipped > 0 {
					s.PrevDroppedPackets = uint16(min(skipped, 1<<16-1))
				}
				q.write(s)
			}
			clear(batch)
		}
	}
}

func (q *QueuedWriter) write(s pmedia.Sample) {
	if err := q.w.WriteSample(s); err != nil {
		q.errs.Add(1)
		return
	}
	q.written.Add(1)
	q.bytes.Add(uint64(len(s.Data)))
}
