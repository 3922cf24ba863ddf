package media

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/kvsrtc/kvsrtc/media/testsrc"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// DefaultFPS is the frame rate assumed for H.264 Annex-B input, which
// carries no timing of its own.
const DefaultFPS = 30

// maxLag is how far a paced source may fall behind its schedule (a stalled
// process, a slow reader) before it stops trying to catch up and restarts
// its clock, instead of sending a burst.
const maxLag = time.Second

// SourceConfig configures a [Source]. The zero value paces in real time,
// loops files and the test pattern, assumes 30 fps for H.264 and discards
// logs.
type SourceConfig struct {
	// Once plays a file or the test pattern a single time (ReadSample then
	// returns io.EOF) instead of looping. Streams never loop.
	Once bool

	// Unpaced returns samples as fast as they can be read instead of when
	// they are due (for tests, benchmarks and converters).
	Unpaced bool

	// FPS is the frame rate of H.264 Annex-B input (files and streams),
	// which has no timestamps. 0 means [DefaultFPS]. Must be in (0, 240].
	FPS float64

	// ArrivalTiming (streams only) times samples by when they arrive: no
	// pacing, and each sample's Duration is the time since the previous
	// one arrived. Use it for live input that is already real time.
	ArrivalTiming bool

	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
}

func (c SourceConfig) frameDuration() (time.Duration, error) {
	fps := c.FPS
	if fps == 0 {
		fps = DefaultFPS
	}
	if !(fps > 0 && fps <= 240) {
		return 0, fmt.Errorf("media: FPS %v out of range (0, 240]", c.FPS)
	}
	return time.Duration(float64(time.Second) / fps), nil
}

func (c SourceConfig) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// frameReader reads one pass over an input without pacing.
type frameReader interface {
	// next returns the next sample's data, its duration (the time until
	// the next sample) and whether it is a keyframe; io.EOF at the end.
	next() (data []byte, dur time.Duration, key bool, err error)
}

// h264FrameReader adapts h264AUReader to frameReader with a fixed rate.
type h264FrameReader struct {
	au  *h264AUReader
	dur time.Duration
}

func (h *h264FrameReader) next() ([]byte, time.Duration, bool, error) {
	b, key, err := h.au.next()
	return b, h.dur, key, err
}

// opusFrameReader adapts oggOpusReader to frameReader.
type opusFrameReader struct{ o *oggOpusReader }

func (o *opusFrameReader) next() ([]byte, time.Duration, bool, error) {
	for {
		p, err := o.o.nextPacket()
		if err != nil {
			return nil, 0, false, err
		}
		d, err := OpusPacketDuration(p)
		if err != nil {
			continue // skip a corrupt packet rather than stop the stream
		}
		return p, d, true, nil
	}
}

// source implements Source over a frameReader with looping and pacing.
type source struct {
	codec    rtc.Codec
	name     string
	log      *slog.Logger
	open     func() (frameReader, error) // restarts the input; nil if it cannot loop
	rd       frameReader
	closer   io.Closer
	loop     bool
	paced    bool
	arrival  bool
	fallback time.Duration // first duration with ArrivalTiming

	pts         time.Duration // PTS of the next sample
	start       time.Time     // wall time of PTS 0 (paced)
	started     bool
	lastArrival time.Time
	firstArr    time.Time
	passFrames  int
	warnedTrunc bool
	timer       *time.Timer
	deadline    func(time.Time) error // unblocks a stream read on cancel; may be nil
	closed      bool
}

func (s *source) Codec() rtc.Codec { return s.codec }

func (s *source) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.closer != nil {
		return s.closer.Close()
	}
	return nil
}

func (s *source) readNext(ctx context.Context) ([]byte, time.Duration, bool, error) {
	if s.deadline != nil {
		stop := context.AfterFunc(ctx, func() { _ = s.deadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() {
				_ = s.deadline(time.Time{})
			}
		}()
	}
	for attempt := 0; ; attempt++ {
		data, dur, key, err := s.rd.next()
		if err == nil {
			s.passFrames++
			return data, dur, key, nil
		}
		if ctx.Err() != nil {
			return nil, 0, false, ctx.Err()
		}
		endOfPass := errors.Is(err, io.EOF)
		if errors.Is(err, ErrTruncated) && s.loop && s.passFrames > 0 {
			if !s.warnedTrunc {
				s.log.Warn("media: input ends with a truncated frame; looping from the start", "source", s.name, "err", err)
				s.warnedTrunc = true
			}
			endOfPass = true
		}
		if !endOfPass {
			return nil, 0, false, fmt.Errorf("media: %s: %w", s.name, err)
		}
		if !s.loop || s.open == nil || s.passFrames == 0 || attempt > 0 {
			return nil, 0, false, io.EOF
		}
		s.log.Debug("media: looping", "source", s.name, "frames", s.passFrames)
		rd, err := s.open()
		if err != nil {
			return nil, 0, false, fmt.Errorf("media: %s: reopen to loop: %w", s.name, err)
		}
		s.rd, s.passFrames = rd, 0
	}
}

func (s *source) ReadSample(ctx context.Context) (Sample, error) {
	if s.closed {
		return Sample{}, fmt.Errorf("media: %s: %w", s.name, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return Sample{}, err
	}
	data, dur, key, err := s.readNext(ctx)
	if err != nil {
		return Sample{}, err
	}
	var smp Sample
	smp.Data, smp.Duration, smp.Keyframe = data, dur, key

	switch {
	case s.arrival:
		now := time.Now()
		if s.lastArrival.IsZero() {
			smp.Duration = s.fallback
			s.firstArr = now
		} else {
			smp.Duration = max(now.Sub(s.lastArrival), time.Millisecond)
		}
		s.lastArrival = now
		smp.Timestamp = now
		smp.PTS = now.Sub(s.firstArr)
		return smp, nil
	case s.paced:
		now := time.Now()
		if !s.started {
			s.start, s.started = now, true
		}
		due := s.start.Add(s.pts)
		if lag := now.Sub(due); lag > maxLag {
			s.log.Debug("media: source fell behind; restarting its clock", "source", s.name, "lag", lag)
			s.start = now.Add(-s.pts)
			due = now
		}
		if wait := due.Sub(now); wait > 0 {
			if err := s.sleep(ctx, wait); err != nil {
				return Sample{}, err
			}
		}
		smp.Timestamp = due
	default:
		smp.Timestamp = time.Now()
	}
	smp.PTS = s.pts
	s.pts += dur
	return smp, nil
}

func (s *source) sleep(ctx context.Context, d time.Duration) error {
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d)
	}
	select {
	case <-s.timer.C:
		return nil
	case <-ctx.Done():
		s.timer.Stop()
		return ctx.Err()
	}
}

// OpenFile opens a media file as a [Source]: H.264 Annex-B (.h264, .264),
// VP8 in IVF (.ivf), Opus in Ogg (.ogg, .opus) or the H.264 track of an
// MP4 (use [OpenMP4] to get its Opus track too). The format is detected
// from the content (the extension only breaks ties and improves error
// messages). Anything else fails with a *FormatError that wraps
// ErrUnsupportedFormat and says how to convert it with ffmpeg. Files loop
// unless cfg.Once is set.
func OpenFile(path string, cfg SourceConfig) (Source, error) {
	frameDur, err := cfg.frameDuration()
	if err != nil {
		return nil, err
	}
	if IsMP4File(path) {
		tracks, err := OpenMP4(path, cfg)
		if err != nil {
			return nil, err
		}
		if tracks.Audio != nil {
			tracks.Audio.Close()
			cfg.logger().Info("media: the MP4's audio track is not sent by OpenFile; use OpenMP4", "file", path)
		}
		return tracks.Video, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	src, err := newSeekableSource(f, path, f, cfg, frameDur)
	if err != nil {
		f.Close()
		return nil, err
	}
	return src, nil
}

// NewTestSource returns the embedded test media as a [Source]: the 640x360
// 30 fps test pattern for rtc.CodecH264 or rtc.CodecVP8 and the 440 Hz tone
// for rtc.CodecOpus (see package testsrc). It loops unless cfg.Once is set;
// cfg.FPS is ignored.
func NewTestSource(codec rtc.Codec, cfg SourceConfig) (Source, error) {
	var data []byte
	switch codec {
	case rtc.CodecH264:
		data = testsrc.H264()
	case rtc.CodecVP8:
		data = testsrc.VP8IVF()
	case rtc.CodecOpus:
		data = testsrc.OpusOgg()
	default:
		return nil, fmt.Errorf("media: test source: %w %q", rtc.ErrUnknownCodec, string(codec))
	}
	cfg.FPS = testsrc.FPS
	frameDur, _ := cfg.frameDuration()
	return newSeekableSource(bytes.NewReader(data), "testsrc:"+codec.String(), nil, cfg, frameDur)
}

// newSeekableSource detects the format of rs and builds a looping source.
func newSeekableSource(rs io.ReadSeeker, name string, closer io.Closer, cfg SourceConfig, frameDur time.Duration) (*source, error) {
	path := name
	if closer == nil {
		path = "" // embedded: no file path in errors
	}
	var headBuf [16]byte
	n, err := io.ReadFull(rs, headBuf[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("media: %s: %w", name, err)
	}
	head := headBuf[:n]
	kind := sniff(head)
	log := cfg.logger()
	if kind == kindUnknown {
		e := unsupported(path, head)
		if ext := kindByExt(name); ext != kindUnknown && len(head) > 0 {
			e.Detail = fmt.Sprintf("extension says %s but the content is not (it starts with % x)", ext, head[:min(len(head), 8)])
		}
		return nil, e
	}
	if ext := kindByExt(name); ext != kindUnknown && ext != kind {
		log.Warn("media: file extension does not match its content; using the content", "file", name, "extension", ext.String(), "content", kind.String())
	}
	var codec rtc.Codec
	switch kind {
	case kindH264:
		codec = rtc.CodecH264
	case kindIVF:
		codec = rtc.CodecVP8
	case kindOgg:
		codec = rtc.CodecOpus
	}
	open := func() (frameReader, error) {
		if _, err := rs.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		br := bufio.NewReaderSize(rs, 64<<10)
		switch kind {
		case kindH264:
			au, err := newH264AUReader(br)
			if err != nil {
				return nil, err
			}
			return &h264FrameReader{au: au, dur: frameDur}, nil
		case kindIVF:
			return newIVFFrameReader(br)
		default:
			o, err := newOggOpusReader(br)
			if err != nil {
				return nil, err
			}
			return &opusFrameReader{o: o}, nil
		}
	}
	rd, err := open()
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.Path = path
			return nil, fe
		}
		return nil, fmt.Errorf("media: %s: %w", name, err)
	}
	return &source{
		codec: codec, name: name, log: log, open: open, rd: rd, closer: closer,
		loop: !cfg.Once, paced: !cfg.Unpaced,
	}, nil
}

// streamFrameReader reads H.264 Annex-B from a live stream, checking the
// first bytes so a wrong input fails with a clear error.
type streamFrameReader struct {
	br      *bufio.Reader
	h       *h264FrameReader
	checked bool
}

func (s *streamFrameReader) next() ([]byte, time.Duration, bool, error) {
	if !s.checked {
		head, err := s.br.Peek(4)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, false, err
		}
		if sniff(head) != kindH264 {
			e := unsupported("", head)
			e.Detail = "stream input must be H.264 Annex-B"
			e.Hint = "pipe it from ffmpeg, e.g.: ffmpeg -i INPUT -an -c:v libx264 -profile:v baseline -tune zerolatency -f h264 -"
			if len(head) == 0 {
				e.Err = io.EOF
			}
			return nil, 0, false, e
		}
		s.checked = true
		au, err := newH264AUReader(s.br)
		if err != nil {
			return nil, 0, false, err
		}
		s.h.au = au
	}
	return s.h.next()
}

// NewH264Stream returns a live [Source] reading H.264 Annex-B from r (for
// example os.Stdin fed by `ffmpeg ... -f h264 -`). It never loops; at the
// end of r, ReadSample returns io.EOF. Samples are paced at cfg.FPS unless
// cfg.ArrivalTiming or cfg.Unpaced is set.
//
// The source does not close r. A ReadSample blocked in r.Read returns on
// cancellation only if r has a SetReadDeadline method (net.Conn, pipes) or
// once r yields data; otherwise it returns when the next frame arrives.
func NewH264Stream(r io.Reader, cfg SourceConfig) (Source, error) {
	if r == nil {
		return nil, errors.New("media: NewH264Stream: nil reader")
	}
	frameDur, err := cfg.frameDuration()
	if err != nil {
		return nil, err
	}
	s := &source{
		codec:    rtc.CodecH264,
		name:     "stream",
		log:      cfg.logger(),
		rd:       &streamFrameReader{br: bufio.NewReaderSize(r, 64<<10), h: &h264FrameReader{dur: frameDur}},
		paced:    !cfg.Unpaced && !cfg.ArrivalTiming,
		arrival:  cfg.ArrivalTiming,
		fallback: frameDur,
	}
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		s.deadline = d.SetReadDeadline
	}
	return s, nil
}
