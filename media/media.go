package media

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	pmedia "github.com/pion/webrtc/v4/pkg/media"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// Sentinel errors. Errors returned by this package wrap one of these (or
// context / I/O errors) so callers can test them with errors.Is.
var (
	// ErrUnsupportedFormat: the input is not H.264 Annex-B, VP8 IVF or Opus Ogg.
	ErrUnsupportedFormat = errors.New("unsupported media format")
	// ErrTruncated: the input ended in the middle of a frame, page or header.
	ErrTruncated = errors.New("truncated media")
	// ErrInvalidData: the bitstream is malformed.
	ErrInvalidData = errors.New("invalid media data")
	// ErrCodecMismatch: a frame's codec does not match what a sink expects.
	ErrCodecMismatch = errors.New("codec mismatch")
	// ErrNoKeyframe: a recording was closed before any video keyframe arrived.
	ErrNoKeyframe = errors.New("no keyframe received")
	// ErrClosed: the source or sink was already closed.
	ErrClosed = errors.New("closed")
)

// FormatError describes an input file or stream that cannot be used.
// It wraps ErrUnsupportedFormat, ErrTruncated or ErrInvalidData.
type FormatError struct {
	Path   string // file path, or "" for a stream
	Format string // what was detected ("mp4", "IVF/VP90", ...), may be empty
	Err    error  // sentinel (or underlying) error; never nil
	Detail string // what exactly is wrong
	Hint   string // how to fix it, e.g. an ffmpeg command; may be empty
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("media: ")
	if e.Path != "" {
		fmt.Fprintf(&b, "%s: ", e.Path)
	}
	b.WriteString(e.Err.Error())
	if e.Format != "" {
		fmt.Fprintf(&b, " (%s)", e.Format)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, "; %s", e.Hint)
	}
	return b.String()
}

// Unwrap returns the wrapped sentinel or cause.
func (e *FormatError) Unwrap() error { return e.Err }

// Sample is one encoded media sample from a [Source]: pion's media.Sample
// (Data, Duration, Timestamp) plus what a relay needs to know about it.
//
// Sample.Duration is the time until the next sample, which is what
// webrtc.TrackLocalStaticSample.WriteSample advances the RTP clock by.
// Sample.Timestamp is the wall-clock time the sample was due (paced
// sources) or read (unpaced ones).
type Sample struct {
	pmedia.Sample

	// Keyframe is set on samples a decoder can start from: H.264 access
	// units with an IDR slice (SPS and PPS are always included in them),
	// VP8 key frames, and every Opus packet.
	Keyframe bool

	// PTS is the presentation time since the start of the source; it keeps
	// increasing across loops.
	PTS time.Duration
}

// Source produces the samples of one track. Implementations are not safe
// for concurrent use: one goroutine reads, and Close may be called after
// that goroutine has stopped reading.
type Source interface {
	// Codec is the codec of the samples; use rtc.Capability(Codec()) to
	// create a track for them.
	Codec() rtc.Codec

	// ReadSample returns the next sample. Paced sources block until the
	// sample is due. It returns io.EOF at the end of a source that does
	// not loop, ctx.Err() when ctx is done, and otherwise an error that
	// wraps one of the package's sentinels or an I/O error.
	ReadSample(ctx context.Context) (Sample, error)

	// Close releases the source (closing files it opened). It is safe to
	// call more than once.
	Close() error
}

// isVideo reports whether c is a video codec.
func isVideo(c rtc.Codec) bool { return c == rtc.CodecH264 || c == rtc.CodecVP8 }
