package media

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// opusStreamReader reads Ogg/Opus from a live stream, checking the first
// page so a wrong input fails with a clear error.
type opusStreamReader struct {
	br *bufio.Reader
	o  *opusFrameReader
}

func (s *opusStreamReader) next() ([]byte, time.Duration, bool, error) {
	if s.o == nil {
		head, err := s.br.Peek(4)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, false, err
		}
		if sniff(head) != kindOgg {
			e := unsupported("", head)
			e.Detail = "stream input must be Ogg/Opus"
			e.Hint = "pipe it from ffmpeg, e.g.: ffmpeg -i INPUT -vn -c:a libopus -ar 48000 -f ogg -"
			if len(head) == 0 {
				e.Err = io.EOF
			}
			return nil, 0, false, e
		}
		o, err := newOggOpusReader(s.br)
		if err != nil {
			return nil, 0, false, err
		}
		s.o = &opusFrameReader{o: o}
	}
	return s.o.next()
}

// NewOpusStream returns a live [Source] reading Ogg/Opus from r (for
// example os.Stdin fed by `ffmpeg ... -c:a libopus -f ogg -`): the
// talk-back input of `kvsrtc view --talk -`. It never loops; at the end of
// r, ReadSample returns io.EOF. Samples are paced by their Opus durations
// unless cfg.Unpaced or cfg.ArrivalTiming is set. Input that is not
// Ogg/Opus fails at the first ReadSample with a *FormatError.
//
// The source does not close r; see [NewH264Stream] for how a blocked read
// ends.
func NewOpusStream(r io.Reader, cfg SourceConfig) (Source, error) {
	if r == nil {
		return nil, errors.New("media: NewOpusStream: nil reader")
	}
	s := &source{
		codec:    rtc.CodecOpus,
		name:     "stream",
		log:      cfg.logger(),
		rd:       &opusStreamReader{br: bufio.NewReaderSize(r, 64<<10)},
		paced:    !cfg.Unpaced && !cfg.ArrivalTiming,
		arrival:  cfg.ArrivalTiming,
		fallback: 20 * time.Millisecond,
	}
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		s.deadline = d.SetReadDeadline
	}
	return s, nil
}

// ErrNotOpus is wrapped by [CheckTalkback] when a source is not Opus.
var ErrNotOpus = fmt.Errorf("%w: talk-back audio must be Opus", ErrUnsupportedFormat)

// CheckTalkback returns nil if src can be sent as talk-back audio (an Opus
// source), or a *FormatError wrapping ErrNotOpus that says how to convert
// the input.
func CheckTalkback(src Source, name string) error {
	if src == nil || src.Codec() == rtc.CodecOpus {
		return nil
	}
	return &FormatError{Path: name, Format: src.Codec().String(), Err: ErrNotOpus,
		Detail: "the input is video, not Ogg/Opus audio",
		Hint:   "convert with: ffmpeg -i INPUT -vn -c:a libopus -ar 48000 talk.ogg"}
}
