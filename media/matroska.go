package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/at-wat/ebml-go/mkvcore"
	"github.com/at-wat/ebml-go/webm"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// Matroska codec IDs (https://www.matroska.org/technical/codec_specs.html).
const (
	codecIDH264 = "V_MPEG4/ISO/AVC"
	codecIDVP8  = "V_VP8"
	codecIDOpus = "A_OPUS"
)

// cuesReserve is the space kept at the front of seekable recordings for
// the Cues index (one entry per cluster, about 20 bytes each; ebml-go
// thins the entries out if they do not fit).
const cuesReserve = 64 << 10

// MatroskaConfig configures a [MatroskaWriter].
type MatroskaConfig struct {
	// Video is the video codec (rtc.CodecH264 or rtc.CodecVP8), or "" for
	// an audio-only recording.
	Video rtc.Codec

	// Audio adds an Opus track.
	Audio bool

	// WebM writes DocType "webm" (VP8 and Opus only) instead of "matroska".
	// CreateMatroskaFile sets it from the file extension.
	WebM bool

	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

func (c MatroskaConfig) validate() error {
	switch c.Video {
	case "", rtc.CodecH264, rtc.CodecVP8:
	default:
		return fmt.Errorf("media: recording: %w: video codec %q (want H264 or VP8)", ErrCodecMismatch, string(c.Video))
	}
	if c.Video == "" && !c.Audio {
		return errors.New("media: recording: no video codec and no audio: nothing to record")
	}
	if c.WebM && c.Video == rtc.CodecH264 {
		return fmt.Errorf("media: recording: %w: H.264 cannot be stored in WebM; record to a .mkv file instead", ErrCodecMismatch)
	}
	return nil
}

// MatroskaWriter records one video track (H.264 or VP8) and/or one Opus
// track to Matroska (.mkv) or WebM (.webm) with ebml-go. It is a [Sink]
// that is safe for concurrent use, so the video and audio Receivers of a
// viewer can share one.
//
// Recording starts at the first video keyframe (its SPS/PPS become the
// avcC CodecPrivate for H.264); earlier frames, and audio before it, are
// dropped. Block times are the media's own: each frame's PTS (from its
// unwrapped RTP timestamps) relative to the first recorded frame, so a
// GOP that arrives in one burst keeps its frame spacing. H.264 frames are
// written in decode order with their presentation times (with B-frames
// these go back and forth, as Matroska allows).
//
// The audio track is placed on the video's timeline by the sender's
// clock when both tracks' frames carry [Frame.SenderTime] (from RTCP
// sender reports) within the first [SyncHold] of audio; otherwise by
// arrival, taking for each track the earliest arrival relative to its
// media time (a burst of old frames arrives early for its media time, so
// its first frame's arrival would misplace the audio by the burst's
// length). Audio is held back until that choice is made. Frames of a new
// RTP stream (a new [Frame.SSRC], as after a viewer reconnects, whose
// times start again at 0) continue the recording after what was written
// and the time without video, from a keyframe. Close finalises
// the file: on a seekable output (a file) it writes the duration and a
// Cues index.
type MatroskaWriter struct {
	cfg MatroskaConfig
	log *slog.Logger
	out *matroskaOut

	mu        sync.Mutex
	ws        []mkvcore.BlockWriteCloser
	video     mkvcore.BlockWriter
	audio     mkvcore.BlockWriter
	started   bool
	closed    bool
	videoT    trackTiming
	audioT    trackTiming
	audioSet  bool    // audioT.off is decided
	pending   []Frame // audio held until audioT.off is decided
	lastVideo int64   // block time of the latest video frame, ms
	maxVideo  int64   // latest video block time, ms
	lastAudio int64
	dropped   int
}

// SyncHold is how long (in audio arrival time) a [MatroskaWriter] holds
// the audio of a recording with video back while it waits for RTCP sender
// reports of both tracks to align them; after that it aligns by arrival.
const SyncHold = 1500 * time.Millisecond

// NewMatroskaWriter returns a MatroskaWriter that writes to w. It does not
// close w. If w is an io.WriterAt and io.Seeker positioned at offset 0 (a
// new *os.File), the duration and Cues are written on Close.
func NewMatroskaWriter(w io.Writer, cfg MatroskaConfig) (*MatroskaWriter, error) {
	return newMatroskaWriter(w, nil, cfg)
}

// CreateMatroskaFile creates (or truncates) path and records to it. The
// extension picks the container: .webm (VP8 and Opus only) or .mkv / .mka
// (any supported codec). Close closes the file.
func CreateMatroskaFile(path string, cfg MatroskaConfig) (*MatroskaWriter, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".webm":
		cfg.WebM = true
	case ".mkv", ".mka":
		cfg.WebM = false
	default:
		return nil, fmt.Errorf("media: recording %s: extension must be .mkv or .webm", path)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("media: recording: %w", err)
	}
	m, err := newMatroskaWriter(f, f, cfg)
	if err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

func newMatroskaWriter(w io.Writer, closer io.Closer, cfg MatroskaConfig) (*MatroskaWriter, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	out := &matroskaOut{w: w, closer: closer}
	if wa, ok := w.(io.WriterAt); ok {
		if sk, ok := w.(io.Seeker); ok {
			if pos, err := sk.Seek(0, io.SeekCurrent); err == nil && pos == 0 {
				out.wa = wa
			}
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &MatroskaWriter{cfg: cfg, log: log, out: out}, nil
}

// opusHead builds the OpusHead CodecPrivate (RFC 7845 section 5.1) for a
// 48 kHz stereo WebRTC stream.
func opusHead() []byte {
	h := make([]byte, 19)
	copy(h, "OpusHead")
	h[8] = 1 // version
	h[9] = 2 // channels
	binary.LittleEndian.PutUint16(h[10:], 0)
	binary.LittleEndian.PutUint32(h[12:], 48000)
	binary.LittleEndian.PutUint16(h[16:], 0) // output gain
	h[18] = 0                                // channel mapping family
	return h
}

// videoTrack builds the video TrackEntry from the first keyframe; ok is
// false if the keyframe lacks what the track needs.
func (m *MatroskaWriter) videoTrack(f Frame, number uint64) (webm.TrackEntry, bool) {
	te := webm.TrackEntry{Name: "Video", TrackNumber: number, TrackUID: number, TrackType: 1}
	switch m.cfg.Video {
	case rtc.CodecH264:
		info := inspectH264(f.Data)
		if info.sps == nil || info.pps == nil {
			return te, false
		}
		avcC, err := AVCDecoderConfig(info.sps, info.pps)
		if err != nil {
			return te, false
		}
		sps, err := ParseSPS(info.sps)
		if err != nil {
			m.log.Debug("media: recording: cannot parse SPS", "err", err)
			return te, false
		}
		te.CodecID, te.CodecPrivate = codecIDH264, avcC
		te.Video = &webm.Video{PixelWidth: uint64(sps.Width), PixelHeight: uint64(sps.Height)}
	case rtc.CodecVP8:
		w, h, ok := VP8FrameSize(f.Data)
		if !ok {
			return te, false
		}
		te.CodecID = codecIDVP8
		te.Video = &webm.Video{PixelWidth: uint64(w), PixelHeight: uint64(h)}
	}
	return te, true
}

// startLocked writes the header; f is the first frame to record.
func (m *MatroskaWriter) startLocked(f Frame) (bool, error) {
	var tracks []mkvcore.TrackDescription
	videoNum, audioNum := uint64(0), uint64(0)
	if m.cfg.Video != "" {
		te, ok := m.videoTrack(f, 1)
		if !ok {
			return false, nil
		}
		videoNum = 1
		tracks = append(tracks, mkvcore.TrackDescription{TrackNumber: 1, TrackEntry: te})
	}
	if m.cfg.Audio {
		audioNum = uint64(len(tracks) + 1)
		tracks = append(tracks, mkvcore.TrackDescription{TrackNumber: audioNum, TrackEntry: webm.TrackEntry{
			Name: "Audio", TrackNumber: audioNum, TrackUID: audioNum, TrackType: 2,
			CodecID: codecIDOpus, CodecPrivate: opusHead(),
			SeekPreRoll: uint64(80 * time.Millisecond),
			Audio:       &webm.Audio{SamplingFrequency: 48000, Channels: 2},
		}})
	}
	docType := "matroska"
	if m.cfg.WebM {
		docType = "webm"
	}
	// The sorter interleaves the tracks by block time, keeping each
	// track's own order: H.264 with B-frames comes in decode order with
	// presentation times, which must be written as they are, not dropped
	// as outdated. It holds up to 2 s of video while audio is held back.
	sorter, err := mkvcore.NewMultiTrackBlockSorter(mkvcore.WithMaxDelayedPackets(64), mkvcore.WithSortRule(mkvcore.BlockSorterWriteOutdated))
	if err != nil {
		return false, err
	}
	opts := []mkvcore.BlockWriterOption{
		mkvcore.WithEBMLHeader(&webm.EBMLHeader{
			EBMLVersion: 1, EBMLReadVersion: 1, EBMLMaxIDLength: 4, EBMLMaxSizeLength: 8,
			DocType: docType, DocTypeVersion: 4, DocTypeReadVersion: 2,
		}),
		mkvcore.WithSegmentInfo(&webm.Info{TimecodeScale: uint64(time.Millisecond), MuxingApp: "kvsrtc", WritingApp: "kvsrtc"}),
		mkvcore.WithBlockInterceptor(sorter),
		mkvcore.WithSeekHead(true),
		mkvcore.WithOnErrorHandler(func(err error) { m.log.Debug("media: recording: frame skipped", "err", err) }),
		mkvcore.WithOnFatalHandler(func(err error) {
			// Runs on ebml-go's goroutine, possibly while WriteFrame
			// holds m.mu: record it on the output, never take m.mu.
			m.log.Error("media: recording failed", "err", err)
			m.out.fail(err)
		}),
	}
	if videoNum != 0 {
		// A new cluster at every video keyframe, so Cues point at keyframes.
		opts = append(opts, mkvcore.WithMinMaxClusterDuration(videoNum, 0, 0x7fff))
	}
	var w io.WriteCloser = m.out
	if m.out.wa != nil {
		w = seekableOut{m.out}
		opts = append(opts, mkvcore.WithCues(cuesReserve))
	}
	ws, err := mkvcore.NewSimpleBlockWriter(w, tracks, opts...)
	if err != nil {
		return false, fmt.Errorf("media: recording: %w", err)
	}
	m.ws = ws
	if videoNum != 0 {
		m.video = ws[videoNum-1]
	}
	if audioNum != 0 {
		m.audio = ws[audioNum-1]
	}
	m.started = true
	return true, nil
}

// WriteFrame records f if it belongs to one of the writer's tracks.
func (m *MatroskaWriter) WriteFrame(f Frame) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("media: recording: %w", ErrClosed)
	}
	if err := m.out.error(); err != nil {
		return fmt.Errorf("media: recording: %w", err)
	}
	if f.Arrival.IsZero() {
		f.Arrival = time.Now()
	}
	if f.Codec == rtc.CodecOpus {
		if !m.cfg.Audio {
			return fmt.Errorf("media: recording: %w: got opus but the recording has no audio track", ErrCodecMismatch)
		}
		return m.writeAudioLocked(f)
	}
	if f.Codec == m.cfg.Video && f.Codec != "" {
		return m.writeVideoLocked(f)
	}
	return fmt.Errorf("media: recording: %w: got %s, recording %q video", ErrCodecMismatch, f.Codec, string(m.cfg.Video))
}

func (m *MatroskaWriter) writeVideoLocked(f Frame) error {
	if !m.started {
		if !f.Keyframe {
			m.dropped++
			return nil
		}
		ok, err := m.startLocked(f)
		if err != nil || !ok {
			m.dropped++
			return err
		}
		m.log.Debug("media: recording started", "codec", f.Codec.String(), "dropped_before", m.dropped)
	} else if m.videoT.set && f.SSRC != m.videoT.ssrc {
		// A new RTP stream (the viewer reconnected): it starts at a
		// keyframe, after what was recorded and the time without video.
		if !f.Keyframe {
			m.dropped++
			return nil
		}
		off := time.Duration(m.maxVideo)*time.Millisecond + max(f.Arrival.Sub(m.videoT.last), time.Second/30)
		m.log.Debug("media: recording: new video stream", "ssrc", f.SSRC, "at", off)
		m.videoT = trackTiming{off: off}
		// Line the audio up again, with this stream.
		if err := m.newAudioStreamLocked(); err != nil {
			return err
		}
	}
	ms := max((m.videoT.off + m.videoT.observe(f)).Milliseconds(), 0)
	if m.cfg.Video != rtc.CodecH264 {
		// VP8 has no reordering: keep the blocks in time order even if
		// the RTP timestamps jump back. (H.264 times may go back: B-frames.)
		ms = max(ms, m.lastVideo)
	}
	m.lastVideo, m.maxVideo = ms, max(m.maxVideo, ms)
	data := f.Data
	if m.cfg.Video == rtc.CodecH264 {
		data = AnnexBToAVC(make([]byte, 0, len(f.Data)+16), f.Data)
	}
	_, err := m.video.Write(f.Keyframe, ms, data)
	return err
}

func (m *MatroskaWriter) writeAudioLocked(f Frame) error {
	if !m.started {
		if m.cfg.Video != "" {
			return nil // wait for the first video keyframe
		}
		if _, err := m.startLocked(f); err != nil {
			return err
		}
		m.audioSet = true // audio only: its first frame is time 0
	} else if m.audioT.set && f.SSRC != m.audioT.ssrc {
		if m.cfg.Video == "" {
			// Audio only: the new stream follows what was recorded.
			off := time.Duration(m.lastAudio)*time.Millisecond + max(f.Arrival.Sub(m.audioT.last), 20*time.Millisecond)
			m.audioT = trackTiming{off: off}
		} else if err := m.newAudioStreamLocked(); err != nil {
			return err
		}
	}
	m.audioT.observe(f)
	if m.audioSet {
		return m.writeAudioBlockLocked(f)
	}
	m.pending = append(m.pending, f)
	return m.syncLocked(false)
}

// newAudioStreamLocked makes the next audio frame start a new audio
// stream timing, aligned again with the current video stream; audio held
// for the previous one is written first.
func (m *MatroskaWriter) newAudioStreamLocked() error {
	if err := m.syncLocked(true); err != nil {
		return err
	}
	m.audioT, m.audioSet = trackTiming{}, false
	return nil
}

// syncLocked decides where the audio goes on the video timeline once it
// can (or, with final, now) and writes the audio held until then.
func (m *MatroskaWriter) syncLocked(final bool) error {
	if m.audioSet || !m.audioT.set {
		return nil
	}
	v, a := &m.videoT, &m.audioT
	switch {
	case !v.sender.IsZero() && !a.sender.IsZero():
		a.off = v.off + a.sender.Sub(v.sender)
		m.log.Debug("media: recording: audio aligned by RTCP sender reports", "audio_at", a.off)
	case final || a.last.Sub(a.first) >= SyncHold:
		a.off = v.off + a.arrival.Sub(v.arrival)
		m.log.Debug("media: recording: audio aligned by arrival time (no sender reports)", "audio_at", a.off)
	default:
		return nil
	}
	m.audioSet = true
	held := m.pending
	m.pending = nil
	for _, f := range held {
		if err := m.writeAudioBlockLocked(f); err != nil {
			return err
		}
	}
	return nil
}

func (m *MatroskaWriter) writeAudioBlockLocked(f Frame) error {
	ms := (m.audioT.off + f.PTS - m.audioT.base).Milliseconds()
	if ms < 0 || ms < m.lastAudio {
		return nil // before the first video frame, or overlapping what was written
	}
	m.lastAudio = ms
	_, err := m.audio.Write(true, ms, f.Data)
	return err
}

// Close finalises the recording and closes the file it created. If no
// video keyframe ever arrived nothing was recorded and the error wraps
// ErrNoKeyframe. Safe to call more than once.
func (m *MatroskaWriter) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	started, ws := m.started, m.ws
	var serr error
	if started {
		serr = m.syncLocked(true)
	}
	m.mu.Unlock()

	if !started {
		_ = m.out.Close()
		if err := m.out.error(); err != nil {
			return fmt.Errorf("media: recording: %w", err)
		}
		return fmt.Errorf("media: recording: %w (%d frames dropped while waiting); the output is empty", ErrNoKeyframe, m.dropped)
	}
	// The last Close blocks until ebml-go has written the Cues and
	// Duration and closed the output.
	for _, w := range ws {
		_ = w.Close()
	}
	if err := m.out.error(); err != nil {
		return fmt.Errorf("media: recording: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("media: recording: %w", serr)
	}
	return nil
}
