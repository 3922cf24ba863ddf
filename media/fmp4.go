package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/Eyevinn/mp4ff/avc"
	"github.com/Eyevinn/mp4ff/bits"
	"github.com/Eyevinn/mp4ff/mp4"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// Track IDs and timescales of the fragmented MP4 written by [FMP4Writer].
const (
	FMP4VideoTrackID   = 1     // the H.264 track
	FMP4AudioTrackID   = 2     // the Opus track, when FMP4Config.Audio is set
	FMP4VideoTimescale = 90000 // video ticks per second (the RTP clock rate)
	FMP4AudioTimescale = 48000 // audio ticks per second (the Opus RTP clock rate)
)

// fmp4DefaultVideoDur is the duration given to a lone video frame whose
// duration is unknown (one frame at 30 fps, in 90 kHz ticks).
const fmp4DefaultVideoDur = FMP4VideoTimescale / 30

// fmp4DefaultAudioDur is the fallback duration of an Opus packet whose
// duration cannot be read from it (20 ms at 48 kHz).
const fmp4DefaultAudioDur = FMP4AudioTimescale / 50

// FMP4Config configures an [FMP4Writer].
type FMP4Config struct {
	// Audio adds an Opus track (track 2, 48 kHz) to the init segment and
	// accepts rtc.CodecOpus frames. Without it Opus frames are refused.
	Audio bool

	// OnFragment receives each finished fragment, in order. It is called
	// from WriteFrame, Flush or Close, with the writer's lock held: it must
	// not call the writer. An error it returns is returned (wrapped) by the
	// call that produced the fragment; the writer stays usable. Required.
	OnFragment func(FMP4Fragment) error

	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

// FMP4Fragment is one fragment of a recording: one GOP of video (and the
// audio that arrived with it), ready to be stored as an ArchiveFragment of
// the emulator's stream archive or appended to a file after its Init.
type FMP4Fragment struct {
	// Init is the init segment (ftyp + moov) the fragment needs: video
	// track 1 (avc1 with the avcC of the GOP's SPS and PPS, 90 kHz) and,
	// with FMP4Config.Audio, Opus track 2 (dOps, 48 kHz). Consecutive
	// fragments with the same parameter sets share the same slice; a new
	// SPS or PPS (resolution change, camera restart) gives a new one.
	Init []byte

	// Media is the media segment: moof (one traf per track that has
	// samples in this fragment) + mdat. Its first video sample is a
	// keyframe. Decode times (tfdt) continue from the previous fragment.
	Media []byte

	// Sequence is the moof sequence number, 1 for the first fragment.
	Sequence uint32

	// Start is the wall-clock time of the fragment's first video frame:
	// its Frame.SenderTime if set, else its Frame.Arrival, else the time
	// WriteFrame received it.
	Start time.Time

	// Duration is the length of the fragment's video, from the PTS.
	Duration time.Duration

	// Frames is the number of video frames (samples of track 1).
	Frames int

	// AudioFrames is the number of Opus packets (samples of track 2).
	AudioFrames int

	// NewInit is set when Init differs from the previous fragment's (and on
	// the first fragment).
	NewInit bool
}

// FMP4Writer records H.264 video and optionally Opus audio to fragmented
// MP4 (ISO/IEC 14496-12 movie fragments), one fragment per GOP, with
// Eyevinn/mp4ff. It takes the same [Frame] values as [MatroskaWriter]:
// H.264 access units in Annex-B form whose keyframes carry SPS and PPS, and
// Opus packets. It is a [Sink] that is safe for concurrent use, so the
// video and audio Receivers of a peer can share one.
//
// A fragment starts at each video keyframe (an access unit with an IDR
// slice); the previous fragment is then handed to FMP4Config.OnFragment,
// as it is by Flush and Close. Frames before the first keyframe, audio
// included, are dropped and counted ([FMP4Writer.Dropped]).
//
// Video samples are stored as 4-byte length-prefixed NAL units; the SPS
// and PPS of keyframes go into the avcC of the init segment instead, and
// access unit delimiters are removed. Sample times come from the frames'
// PTS: the decode times are the GOP's presentation times in increasing
// order (so B-frames get composition offsets), each sample lasts until the
// next one and a fragment's last sample until the next keyframe (on Flush
// and Close: its Frame.Duration, else the previous sample's). Decode times
// are continuous across fragments; PTS that jump backwards (a new RTP
// stream) continue the timeline where it stopped. Audio is timed by its own
// PTS and placed on the video timeline by wall clock (SenderTime when both
// tracks carry it, else arrival) when its first packet arrives.
type FMP4Writer struct {
	cfg FMP4Config
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	waitKey bool // drop video until the next keyframe (start, after Flush)
	dropped int
	seq     uint32

	// Parameter sets of the current init segment, and the segment.
	sps, pps []byte
	init     []byte
	initSent bool // init has been handed out with a fragment

	// The fragment being collected.
	video     []fmp4VideoSample
	audio     []fmp4AudioSample
	fragStart time.Time
	fragInit  []byte

	// Video timeline: a PTS maps to ticks(PTS) + vShift.
	vStarted bool
	vShift   int64
	vNext    int64 // decode time where the next fragment starts
	vLastDur int64 // latest sample duration, the fallback
	vLastPTS time.Duration
	wall0    fmp4Wall // the clocks of the first recorded video frame

	// Audio timeline: a PTS maps to ticks(PTS) + aShift.
	aStarted bool
	aShift   int64
	aNext    int64
	aLastDur int64
	aLastPTS time.Duration
}

// fmp4Wall is a frame's wall clocks.
type fmp4Wall struct{ sender, arrival, now time.Time }

func frameWall(f Frame) fmp4Wall {
	return fmp4Wall{sender: f.SenderTime, arrival: f.Arrival, now: time.Now()}
}

// start is the fragment start time: sender, else arrival, else now.
func (w fmp4Wall) start() time.Time {
	switch {
	case !w.sender.IsZero():
		return w.sender
	case !w.arrival.IsZero():
		return w.arrival
	}
	return w.now
}

// since returns w - w0 on the best clock both have.
func (w fmp4Wall) since(w0 fmp4Wall) time.Duration {
	switch {
	case !w.sender.IsZero() && !w0.sender.IsZero():
		return w.sender.Sub(w0.sender)
	case !w.arrival.IsZero() && !w0.arrival.IsZero():
		return w.arrival.Sub(w0.arrival)
	}
	return w.now.Sub(w0.now)
}

type fmp4VideoSample struct {
	data []byte // AVCC
	pts  time.Duration
	dur  time.Duration // Frame.Duration
	key  bool
}

type fmp4AudioSample struct {
	data []byte
	pts  time.Duration
	dur  time.Duration // Frame.Duration, else the packet's own
}

// NewFMP4Writer returns a writer that hands its fragments to
// cfg.OnFragment.
func NewFMP4Writer(cfg FMP4Config) (*FMP4Writer, error) {
	if cfg.OnFragment == nil {
		return nil, errors.New("media: fMP4: FMP4Config.OnFragment is nil")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FMP4Writer{cfg: cfg, log: log, waitKey: true}, nil
}

// Dropped returns how many frames were dropped because they came before
// the first keyframe (or before the first keyframe after Flush).
func (w *FMP4Writer) Dropped() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// WriteFrame adds a frame. A video keyframe ends the current fragment and
// hands it to OnFragment. Errors wrap ErrClosed, ErrCodecMismatch (a codec
// other than H.264, or Opus without FMP4Config.Audio) or ErrInvalidData (an
// empty frame, an access unit without a slice, bad parameter sets), or are
// OnFragment's error; a refused frame leaves the writer usable.
func (w *FMP4Writer) WriteFrame(f Frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("media: fMP4: %w", ErrClosed)
	}
	if len(f.Data) == 0 {
		return fmt.Errorf("media: fMP4: %w: empty %s frame", ErrInvalidData, f.Codec)
	}
	switch f.Codec {
	case rtc.CodecH264:
		return w.writeVideoLocked(f)
	case rtc.CodecOpus:
		if !w.cfg.Audio {
			return fmt.Errorf("media: fMP4: %w: Opus frame but FMP4Config.Audio is off", ErrCodecMismatch)
		}
		return w.writeAudioLocked(f)
	}
	return fmt.Errorf("media: fMP4: %w: %q frame (want H264 or opus)", ErrCodecMismatch, string(f.Codec))
}

func (w *FMP4Writer) writeVideoLocked(f Frame) error {
	info := inspectH264(f.Data)
	if !info.vcl {
		return fmt.Errorf("media: fMP4: %w: H.264 frame without a slice (%d bytes)", ErrInvalidData, len(f.Data))
	}
	if !info.idr {
		if w.waitKey {
			w.dropped++
			return nil
		}
		w.video = append(w.video, fmp4VideoSample{data: toAVCC(f.Data, false), pts: f.PTS, dur: f.Duration})
		w.vLastPTS = f.PTS
		return nil
	}
	// A keyframe: make sure its parameter sets give an init segment.
	sps, pps := info.sps, info.pps
	if sps == nil {
		sps = w.sps
	}
	if pps == nil {
		pps = w.pps
	}
	if sps == nil || pps == nil {
		if w.waitKey {
			w.dropped++
			return nil
		}
		return fmt.Errorf("media: fMP4: %w: H.264 keyframe without SPS/PPS", ErrInvalidData)
	}
	init := w.init
	if init == nil || !bytes.Equal(sps, w.sps) || !bytes.Equal(pps, w.pps) {
		var err error
		if init, err = buildFMP4Init(sps, pps, w.cfg.Audio); err != nil {
			return fmt.Errorf("media: fMP4: %w", err)
		}
	}
	// End the current fragment at this keyframe. An error (OnFragment's)
	// is returned once the keyframe has started the next fragment.
	var emitErr error
	if len(w.video) > 0 {
		emitErr = w.emitLocked(f.PTS, true)
	}
	if !bytes.Equal(init, w.init) {
		w.sps, w.pps = bytes.Clone(sps), bytes.Clone(pps)
		w.init, w.initSent = init, false
		w.log.Debug("media: fMP4: new init segment", "bytes", len(init))
	}
	if !w.vStarted {
		w.vStarted = true
		w.vShift = -ticks(f.PTS, FMP4VideoTimescale)
		w.wall0 = frameWall(f)
	} else if f.PTS < w.vLastPTS || ticks(f.PTS, FMP4VideoTimescale)+w.vShift < w.vNext {
		// A new stream (PTS from 0 again) or a clock going back: continue
		// the timeline where it stopped.
		w.vShift = w.vNext - ticks(f.PTS, FMP4VideoTimescale)
	}
	w.waitKey = false
	w.fragStart = frameWall(f).start()
	w.fragInit = w.init
	w.video = append(w.video, fmp4VideoSample{data: toAVCC(f.Data, true), pts: f.PTS, dur: f.Duration, key: true})
	w.vLastPTS = f.PTS
	return emitErr
}

func (w *FMP4Writer) writeAudioLocked(f Frame) error {
	pd, err := OpusPacketDuration(f.Data)
	if err != nil {
		return fmt.Errorf("media: fMP4: %w", err)
	}
	if len(w.video) == 0 { // no fragment open: before the first keyframe or after Flush
		w.dropped++
		return nil
	}
	d := f.Duration
	if d <= 0 {
		d = pd
	}
	t := ticks(f.PTS, FMP4AudioTimescale)
	if !w.aStarted {
		w.aStarted = true
		off := frameWall(f).since(w.wall0)
		if off < 0 {
			off = 0
		}
		w.aShift = ticks(off, FMP4AudioTimescale) - t
	} else if len(w.audio) == 0 && (f.PTS < w.aLastPTS || t+w.aShift < w.aNext) {
		w.aShift = w.aNext - t
	}
	w.aLastPTS = f.PTS
	w.audio = append(w.audio, fmp4AudioSample{data: f.Data, pts: f.PTS, dur: d})
	return nil
}

// ticks converts d to a timescale, rounding to the nearest tick.
func ticks(d time.Duration, timescale int64) int64 {
	s := int64(d / time.Second)
	r := int64(d % time.Second)
	return s*timescale + (r*timescale+int64(time.Second)/2)/int64(time.Second)
}

// Flush hands the fragment being collected (if any) to OnFragment. The
// last frame's duration is its Frame.Duration, or the previous frame's.
// The next fragment must start with a keyframe: video frames until then
// are dropped. Use it before a known gap, such as the end of a stream.
func (w *FMP4Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("media: fMP4: %w", ErrClosed)
	}
	return w.flushLocked()
}

func (w *FMP4Writer) flushLocked() error {
	if len(w.video) == 0 {
		return nil
	}
	w.waitKey = true
	return w.emitLocked(0, false)
}

// Close flushes the last fragment and closes the writer. It returns
// ErrNoKeyframe if no keyframe was ever written. Calling it again returns
// nil.
func (w *FMP4Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	err := w.flushLocked()
	w.closed = true
	if err == nil && w.seq == 0 {
		return fmt.Errorf("media: fMP4: %w (%d frames dropped)", ErrNoKeyframe, w.dropped)
	}
	return err
}

// emitLocked encodes the collected samples as one fragment and hands it to
// OnFragment. If nextKnown, the last video sample lasts until nextPTS. The
// samples are gone afterwards, even if the fragment could not be encoded.
func (w *FMP4Writer) emitLocked(nextPTS time.Duration, nextKnown bool) error {
	defer func() {
		clear(w.video)
		w.video = w.video[:0]
		clear(w.audio)
		w.audio = w.audio[:0]
	}()
	vs := w.video
	n := len(vs)
	// Presentation times on the timeline; decode times are them sorted.
	pts := make([]int64, n, 2*n)
	for i, s := range vs {
		pts[i] = ticks(s.pts, FMP4VideoTimescale) + w.vShift
	}
	dts := append(pts[n:], pts...)
	slices.Sort(dts)
	for i := 1; i < n; i++ {
		if dts[i] <= dts[i-1] {
			dts[i] = dts[i-1] + 1
		}
	}
	if first := dts[0]; first < w.vNext {
		// Keep the decode times continuous (a keyframe that is not the
		// GOP's earliest picture in time).
		for i := range dts {
			dts[i] += w.vNext - first
			pts[i] += w.vNext - first
		}
	}
	base := dts[0]
	end := int64(-1)
	if nextKnown {
		if e := ticks(nextPTS, FMP4VideoTimescale) + w.vShift; e > dts[n-1] && nextPTS >= vs[n-1].pts {
			end = e
		}
	}
	if end < 0 {
		last := w.vLastDur
		if d := vs[n-1].dur; d > 0 {
			last = ticks(d, FMP4VideoTimescale)
		} else if n > 1 {
			last = dts[n-1] - dts[n-2]
		}
		if last <= 0 {
			last = fmp4DefaultVideoDur
		}
		end = dts[n-1] + last
	}

	trackIDs := []uint32{FMP4VideoTrackID}
	if len(w.audio) > 0 {
		trackIDs = append(trackIDs, FMP4AudioTrackID)
	}
	frag, err := mp4.CreateMultiTrackFragment(w.seq+1, trackIDs)
	if err != nil {
		return fmt.Errorf("media: fMP4: %w", err)
	}
	parts := make([][]byte, 0, n+len(w.audio))
	for i, s := range vs {
		next := end
		if i+1 < n {
			next = dts[i+1]
		}
		dur := next - dts[i]
		flags := mp4.NonSyncSampleFlags
		if s.key {
			flags = mp4.SyncSampleFlags
		}
		cto := pts[i] - dts[i]
		if dur > 1<<32-1 || cto > 1<<31-1 || cto < -1<<31 {
			return fmt.Errorf("media: fMP4: %w: H.264 frame times out of range", ErrInvalidData)
		}
		sample := mp4.NewSample(flags, uint32(dur), uint32(len(s.data)), int32(cto))
		if err := frag.AddSampleToTrack(sample, FMP4VideoTrackID, uint64(base)); err != nil {
			return fmt.Errorf("media: fMP4: %w", err)
		}
		parts = append(parts, s.data)
		w.vLastDur = dur
	}

	as := w.audio
	aEnd := w.aNext
	if len(as) > 0 {
		aBase := ticks(as[0].pts, FMP4AudioTimescale) + w.aShift
		if aBase < w.aNext {
			aBase = w.aNext
		}
		t := aBase
		for i, s := range as {
			var dur int64
			if i+1 < len(as) {
				dur = ticks(as[i+1].pts, FMP4AudioTimescale) + w.aShift - t
			}
			if dur <= 0 {
				dur = ticks(s.dur, FMP4AudioTimescale)
			}
			if dur <= 0 {
				dur = w.aLastDur
			}
			if dur <= 0 {
				dur = fmp4DefaultAudioDur
			}
			if dur > 1<<32-1 {
				return fmt.Errorf("media: fMP4: %w: Opus packet times out of range", ErrInvalidData)
			}
			sample := mp4.NewSample(mp4.SyncSampleFlags, uint32(dur), uint32(len(s.data)), 0)
			if err := frag.AddSampleToTrack(sample, FMP4AudioTrackID, uint64(aBase)); err != nil {
				return fmt.Errorf("media: fMP4: %w", err)
			}
			parts = append(parts, s.data)
			w.aLastDur = dur
			t += dur
		}
		aEnd = t
	}
	frag.Mdat.SetData(nil)
	for _, p := range parts {
		frag.Mdat.AddSampleDataPart(p)
	}
	sw := bits.NewFixedSliceWriter(int(frag.Size()))
	if err := frag.EncodeSW(sw); err != nil {
		return fmt.Errorf("media: fMP4: encoding the fragment: %w", err)
	}

	out := FMP4Fragment{
		Init:        w.fragInit,
		Media:       sw.Bytes(),
		Sequence:    w.seq + 1,
		Start:       w.fragStart,
		Duration:    time.Duration((end - base) * int64(time.Second) / FMP4VideoTimescale),
		Frames:      n,
		AudioFrames: len(as),
		NewInit:     !w.initSent,
	}
	// The fragment is done whatever OnFragment says: the timeline moves on.
	w.seq++
	w.initSent = true
	w.vNext = end
	w.aNext = aEnd
	if nextKnown {
		// The next keyframe starts exactly where this fragment ends.
		w.vShift = end - ticks(nextPTS, FMP4VideoTimescale)
	}
	if err := w.cfg.OnFragment(out); err != nil {
		return fmt.Errorf("media: fMP4: OnFragment: %w", err)
	}
	return nil
}

// toAVCC converts an Annex-B access unit to 4-byte length-prefixed NAL
// units, dropping access unit delimiters and, in keyframes, the SPS and
// PPS (they are in the avcC).
func toAVCC(annexB []byte, key bool) []byte {
	out := make([]byte, 0, len(annexB)+8)
	for nal := range AnnexBNALs(annexB) {
		switch nal[0] & 0x1f {
		case nalAUD:
			continue
		case nalSPS, nalPPS:
			if key {
				continue
			}
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(nal)))
		out = append(out, nal...)
	}
	return out
}

// buildFMP4Init builds the init segment (ftyp + moov) for the given H.264
// parameter sets, with an Opus track if audio is set.
func buildFMP4Init(sps, pps []byte, audio bool) ([]byte, error) {
	info, err := ParseSPS(sps)
	if err != nil {
		return nil, err
	}
	if info.Width <= 0 || info.Height <= 0 || info.Width > 0xffff || info.Height > 0xffff {
		return nil, fmt.Errorf("%w: H.264 SPS: picture size %dx%d", ErrInvalidData, info.Width, info.Height)
	}
	raw, err := AVCDecoderConfig(sps, pps)
	if err != nil {
		return nil, err
	}
	rec, err := avc.DecodeAVCDecConfRec(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: avcC: %w", ErrInvalidData, err)
	}
	switch rec.AVCProfileIndication {
	case 66, 77, 88:
	default:
		// High profiles: chroma format and bit depths (ISO/IEC 14496-15
		// 5.3.3.1.2).
		luma, chroma, err := spsBitDepths(sps)
		if err != nil {
			return nil, fmt.Errorf("%w: H.264 SPS: %w", ErrInvalidData, err)
		}
		rec.NoTrailingInfo = false
		rec.SkipBytes = 0
		rec.ChromaFormat = byte(info.ChromaFormatIDC)
		rec.BitDepthLumaMinus1 = luma
		rec.BitDepthChromaMinus1 = chroma
	}

	init := mp4.NewMP4Init()
	init.AddChild(mp4.NewFtyp("iso6", 0, []string{"iso6", "isom", "avc1", "mp41", "dash"}))
	moov := mp4.NewMoovBox()
	init.AddChild(moov)
	moov.AddChild(mp4.CreateMvhd())
	moov.AddChild(mp4.NewMvexBox())

	vt := init.AddEmptyTrack(FMP4VideoTimescale, "video", "und")
	vt.Tkhd.Width = mp4.Fixed32(uint32(info.Width) << 16)
	vt.Tkhd.Height = mp4.Fixed32(uint32(info.Height) << 16)
	vt.Mdia.Minf.Stbl.Stsd.AddChild(mp4.CreateVisualSampleEntryBox("avc1",
		uint16(info.Width), uint16(info.Height), &mp4.AvcCBox{DecConfRec: rec}))
	if audio {
		at := init.AddEmptyTrack(FMP4AudioTimescale, "audio", "und")
		dops := &mp4.DopsBox{OutputChannelCount: 2, InputSampleRate: 48000}
		at.Mdia.Minf.Stbl.Stsd.AddChild(mp4.CreateAudioSampleEntryBox("Opus", 2, 16, 48000, dops))
	}
	sw := bits.NewFixedSliceWriter(int(init.Size()))
	if err := init.EncodeSW(sw); err != nil {
		return nil, fmt.Errorf("encoding the init segment: %w", err)
	}
	return sw.Bytes(), nil
}

// spsBitDepths reads bit_depth_luma_minus8 and bit_depth_chroma_minus8
// from a high-profile SPS (ITU-T H.264 7.3.2.1.1).
func spsBitDepths(sps []byte) (luma, chroma byte, err error) {
	r := &bitReader{b: unescapeRBSP(sps[1:])}
	if _, err = r.u(24); err != nil { // profile, constraints, level
		return 0, 0, err
	}
	if _, err = r.ue(); err != nil { // seq_parameter_set_id
		return 0, 0, err
	}
	cf, err := r.ue()
	if err != nil {
		return 0, 0, err
	}
	if cf == 3 {
		if _, err = r.flag(); err != nil {
			return 0, 0, err
		}
	}
	l, err := r.ue()
	if err != nil {
		return 0, 0, err
	}
	c, err := r.ue()
	if err != nil {
		return 0, 0, err
	}
	if l > 6 || c > 6 {
		return 0, 0, fmt.Errorf("bit depth above 14")
	}
	return byte(l), byte(c), nil
}
