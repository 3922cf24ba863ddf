package storage

import (
	"sync"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// recorder writes the camera's frames into the stream's archive: one
// fragmented-MP4 fragment per GOP (media.FMP4Writer), appended with the
// master participant's Record. It lives as long as the session, so a
// camera that re-joins (a new peer connection, new RTP streams) goes on
// in the same timeline: the recording has no gap but the time the camera
// was away.
type recorder struct {
	s      *session
	record func(emulator.ArchiveFragment) error

	mu                      sync.Mutex
	w                       *media.FMP4Writer
	audio                   bool
	fragments, bytes, fails uint64
	warned                  bool
}

func newRecorder(s *session, record func(emulator.ArchiveFragment) error) *recorder {
	return &recorder{s: s, record: record}
}

// write records a frame. The writer starts at the first video keyframe,
// with an audio track when the camera sends audio by then.
func (r *recorder) write(f media.Frame, cameraAudio bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		if f.Codec != rtc.CodecH264 || !f.Keyframe {
			return
		}
		w, err := media.NewFMP4Writer(media.FMP4Config{Audio: cameraAudio, OnFragment: r.onFragment, Logger: r.s.log})
		if err != nil {
			r.failLocked(err)
			return
		}
		r.w, r.audio = w, cameraAudio
	}
	if f.Codec == rtc.CodecOpus && !r.audio {
		return
	}
	if err := r.w.WriteFrame(f); err != nil {
		r.failLocked(err)
	}
}

// onFragment hands a finished fragment to the archive (called by the
// writer with its lock held, from write or close, so with r.mu held).
func (r *recorder) onFragment(fr media.FMP4Fragment) error {
	err := r.record(emulator.ArchiveFragment{Init: fr.Init, Media: fr.Media, Start: fr.Start, Duration: fr.Duration})
	if err != nil {
		return err
	}
	r.fragments++
	r.bytes += uint64(len(fr.Media))
	return nil
}

func (r *recorder) failLocked(err error) {
	r.fails++
	if !r.warned {
		r.warned = true
		r.s.log.Warn("storage session: recording into the stream failed (further failures are counted, not logged)", "err", err)
	}
}

// close writes the last fragment.
func (r *recorder) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil {
		if err := r.w.Close(); err != nil {
			r.failLocked(err)
		}
	}
}

func (r *recorder) counts() (fragments, bytes, fails uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fragments, r.bytes, r.fails
}
