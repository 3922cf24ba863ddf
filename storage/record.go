package storage

import (
	"sync"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/media"
)

// recorder writes the camera's frames into the stream's archive.
type recorder struct {
	s      *session
	record func(emulator.ArchiveFragment) error

	mu                      sync.Mutex
	fragments, bytes, fails uint64
}

func newRecorder(s *session, record func(emulator.ArchiveFragment) error) *recorder {
	return &recorder{s: s, record: record}
}

func (r *recorder) write(f media.Frame) {}

func (r *recorder) close() {}

func (r *recorder) counts() (fragments, bytes, fails uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fragments, r.bytes, r.fails
}
