package media

import (
	"io"
	"sync"
)

// matroskaOut sits between ebml-go and the real writer: ebml-go cannot
// recover from a write error (its writer goroutine stops and later writes
// block), so errors are recorded here, further writes are skipped, and the
// error is reported by WriteFrame and Close.
type matroskaOut struct {
	mu     sync.Mutex
	w      io.Writer
	wa     io.WriterAt // nil unless seekable
	closer io.Closer   // nil unless owned
	err    error
}

func (o *matroskaOut) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		if _, err := o.w.Write(p); err != nil {
			o.err = err
		}
	}
	return len(p), nil
}

func (o *matroskaOut) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closer != nil {
		if err := o.closer.Close(); err != nil && o.err == nil {
			o.err = err
		}
		o.closer = nil
	}
	return nil
}

func (o *matroskaOut) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = err
	}
}

func (o *matroskaOut) error() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// seekableOut adds WriteAt, which ebml-go needs for Cues and Duration.
type seekableOut struct{ *matroskaOut }

func (o seekableOut) WriteAt(p []byte, off int64) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		if _, err := o.wa.WriteAt(p, off); err != nil {
			o.err = err
		}
	}
	return len(p), nil
}
