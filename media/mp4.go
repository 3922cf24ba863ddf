package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/Eyevinn/mp4ff/mp4"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// ErrNoVideoTrack: an MP4 file has no video track that can be sent (no
// H.264 track).
var ErrNoVideoTrack = errors.New("no usable video track")

// MP4Tracks are the sendable tracks of an MP4 file, from [OpenMP4].
type MP4Tracks struct {
	// Video is the file's first H.264 track; never nil.
	Video Source
	// Audio is the file's first Opus track, or nil.
	Audio Source
	// Skipped lists the tracks that are not sent, with the reason and the
	// fix (an AAC track, a second video track, HEVC...).
	Skipped []SkippedTrack
}

// Close closes both sources.
func (t MP4Tracks) Close() error {
	var errs []error
	if t.Video != nil {
		errs = append(errs, t.Video.Close())
	}
	if t.Audio != nil {
		errs = append(errs, t.Audio.Close())
	}
	return errors.Join(errs...)
}

// SkippedTrack is an MP4 track that [OpenMP4] does not send.
type SkippedTrack struct {
	ID     uint32 // track_ID in the file
	Kind   string // "video", "audio" or the handler type ("subt", ...)
	Codec  string // the sample entry's name: "mp4a" (AAC), "hvc1", ...
	Reason string // why it is skipped and how to make it sendable
}

func (s SkippedTrack) String() string {
	return fmt.Sprintf("track %d (%s %s): %s", s.ID, s.Kind, s.Codec, s.Reason)
}

// IsMP4File reports whether the file at path starts like an MP4 or
// QuickTime file (an "ftyp" box). It is false if the file cannot be read.
func IsMP4File(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [12]byte
	n, _ := io.ReadFull(f, head[:])
	return isMP4Head(head[:n])
}

func isMP4Head(head []byte) bool {
	return len(head) >= 8 && (string(head[4:8]) == "ftyp" || string(head[4:8]) == "moov")
}

// mp4Hint is the ffmpeg command that makes an MP4 kvsrtc can send.
func mp4Hint(path string) string {
	return fmt.Sprintf("re-encode with: ffmpeg -i %s -c:v libx264 -profile:v baseline -c:a libopus out.mp4", path)
}

// OpenMP4 opens an MP4 (or QuickTime .mov) file, progressive or
// fragmented, with the Eyevinn/mp4ff library and returns its H.264 video
// track and, if it has one, its Opus audio track as looping [Source]s
// that keep the file's own sample timing (cfg.FPS does not apply).
//
// AAC and other audio cannot be sent over WebRTC (browsers and KVS take
// Opus): such tracks are listed in Skipped with the ffmpeg command that
// converts them (-c:a libopus), and the file plays as video only. A file
// without an H.264 track fails with a *FormatError wrapping
// ErrNoVideoTrack (and ErrUnsupportedFormat) that names the tracks it
// has; a file that is not MP4 fails with a *FormatError wrapping
// ErrUnsupportedFormat.
//
// Each source reads the file through its own handle, so the two can be
// read from different goroutines; close both (MP4Tracks.Close).
func OpenMP4(path string, cfg SourceConfig) (MP4Tracks, error) {
	f, err := os.Open(path)
	if err != nil {
		return MP4Tracks{}, fmt.Errorf("media: %w", err)
	}
	defer f.Close()
	var head [12]byte
	n, _ := io.ReadFull(f, head[:])
	if !isMP4Head(head[:n]) {
		return MP4Tracks{}, unsupported(path, head[:n])
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return MP4Tracks{}, fmt.Errorf("media: %s: %w", path, err)
	}
	video, audio, skipped, err := readMP4(f)
	if err != nil {
		return MP4Tracks{}, &FormatError{Path: path, Format: "MP4", Err: ErrInvalidData, Detail: err.Error(), Hint: mp4Hint(path)}
	}
	if video == nil {
		var found []string
		for _, s := range skipped {
			found = append(found, s.String())
		}
		detail := "the file has no tracks"
		if len(found) > 0 {
			detail = "found " + strings.Join(found, "; ")
		}
		return MP4Tracks{}, &FormatError{Path: path, Format: "MP4", Err: fmt.Errorf("%w: %w", ErrUnsupportedFormat, ErrNoVideoTrack),
			Detail: detail + "; kvsrtc sends H.264 video", Hint: mp4Hint(path)}
	}
	log := cfg.logger()
	var out MP4Tracks
	out.Skipped = skipped
	out.Video, err = newMP4Source(path, video, cfg)
	if err != nil {
		return MP4Tracks{}, err
	}
	if audio != nil {
		if out.Audio, err = newMP4Source(path, audio, cfg); err != nil {
			out.Video.Close()
			return MP4Tracks{}, err
		}
	}
	for _, s := range skipped {
		log.Warn("media: MP4 track not sent", "file", path, "track", s.ID, "kind", s.Kind, "codec", s.Codec, "why", s.Reason)
	}
	if video.reordered {
		log.Warn("media: MP4 video has B-frames (frames out of presentation order); browsers may stutter",
			"file", path, "fix", "ffmpeg -i "+path+" -c:v libx264 -profile:v baseline -c:a copy out.mp4")
	}
	return out, nil
}

// readMP4 decodes the boxes of f and picks its tracks. mp4ff is fuzzed
// upstream; a panic on a malformed file is still turned into an error.
func readMP4(f io.ReadSeeker) (video, audio *mp4Track, skipped []SkippedTrack, err error) {
	defer func() {
		if p := recover(); p != nil {
			video, audio, skipped, err = nil, nil, nil, fmt.Errorf("malformed boxes (%v)", p)
		}
	}()
	if err := checkTopBoxes(f); err != nil {
		return nil, nil, nil, err
	}
	file, err := mp4.DecodeFile(f, mp4.WithDecodeMode(mp4.DecModeLazyMdat))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cannot read the file's boxes: %w", err)
	}
	return pickMP4Tracks(file)
}

// maxMP4Samples bounds the samples of one track (16 Mi: six days at 30
// fps), so a table that claims more than it holds cannot exhaust memory.
const maxMP4Samples = 1 << 24

// maxMP4Box bounds a top-level box other than mdat, which mp4ff reads
// into memory whole (a moov is a few MB even for hours of video).
const maxMP4Box = 256 << 20

// checkTopBoxes walks the top-level box headers so that a box that
// claims more than the file holds (or than maxMP4Box) is an error rather
// than a huge allocation. It leaves rs at offset 0.
func checkTopBoxes(rs io.ReadSeeker) error {
	end, err := rs.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	for pos := int64(0); pos < end; {
		if _, err := rs.Seek(pos, io.SeekStart); err != nil {
			return err
		}
		var h [16]byte
		n, _ := io.ReadFull(rs, h[:])
		if n < 8 {
			break // trailing bytes: mp4ff decides
		}
		size := int64(binary.BigEndian.Uint32(h[:4]))
		typ := string(h[4:8])
		switch size {
		case 0: // to the end of the file
			size = end - pos
		case 1:
			if n < 16 {
				return fmt.Errorf("box %q at %d: 64-bit size cut off", typ, pos)
			}
			size = int64(binary.BigEndian.Uint64(h[8:]))
		}
		if size < 8 {
			return fmt.Errorf("box %q at %d: size %d", typ, pos, size)
		}
		if typ != "mdat" && (size > maxMP4Box || size > end-pos) {
			return fmt.Errorf("box %q at %d claims %d bytes; the file has %d after it (truncated?)", typ, pos, size, end-pos)
		}
		if size > end-pos {
			break // a cut mdat: the samples past the end fail when read
		}
		pos += size
	}
	_, err = rs.Seek(0, io.SeekStart)
	return err
}

// mp4Track is what is needed to read one track's samples.
type mp4Track struct {
	id        uint32
	codec     rtc.Codec
	timescale uint32
	sps, pps  []byte // from avcC (H.264)
	samples   []mp4Sample
	reordered bool // composition offsets vary: B-frames
}

// mp4Sample locates one sample in the file.
type mp4Sample struct {
	off  uint64
	size uint32
	dur  uint32 // in the track's timescale
}

// pickMP4Tracks chooses the first H.264 and the first Opus track and
// builds their sample tables; every other track is listed as skipped.
func pickMP4Tracks(f *mp4.File) (video, audio *mp4Track, skipped []SkippedTrack, err error) {
	moov := f.Moov
	if moov == nil && f.Init != nil {
		moov = f.Init.Moov
	}
	if moov == nil {
		return nil, nil, nil, errors.New("no moov box (is the file complete?)")
	}
	for _, trak := range moov.Traks {
		if trak.Tkhd == nil || trak.Mdia == nil || trak.Mdia.Mdhd == nil || trak.Mdia.Minf == nil ||
			trak.Mdia.Minf.Stbl == nil || trak.Mdia.Minf.Stbl.Stsd == nil {
			continue
		}
		id := trak.Tkhd.TrackID
		kind := "track"
		if trak.Mdia.Hdlr != nil {
			kind = trak.Mdia.Hdlr.HandlerType
		}
		switch kind {
		case "vide":
			kind = "video"
		case "soun":
			kind = "audio"
		}
		stsd := trak.Mdia.Minf.Stbl.Stsd
		entry := "none"
		if len(stsd.Children) > 0 {
			entry = stsd.Children[0].Type()
		}
		skip := func(reason string) {
			skipped = append(skipped, SkippedTrack{ID: id, Kind: kind, Codec: entry, Reason: reason})
		}
		t := &mp4Track{id: id, timescale: trak.Mdia.Mdhd.Timescale}
		switch {
		case stsd.AvcX != nil && kind == "video":
			if video != nil {
				skip("only the first H.264 track is sent")
				continue
			}
			if stsd.AvcX.AvcC == nil {
				skip("H.264 track without its avcC parameter sets")
				continue
			}
			t.codec = rtc.CodecH264
			if len(stsd.AvcX.AvcC.SPSnalus) > 0 && len(stsd.AvcX.AvcC.PPSnalus) > 0 {
				t.sps, t.pps = stsd.AvcX.AvcC.SPSnalus[0], stsd.AvcX.AvcC.PPSnalus[0]
			}
			video = t
		case stsd.Opus != nil && kind == "audio":
			if audio != nil {
				skip("only the first Opus track is sent")
				continue
			}
			t.codec = rtc.CodecOpus
			audio = t
		case stsd.Mp4a != nil:
			skip("AAC cannot be sent over WebRTC (browsers and KVS take Opus); the file plays as video only. " +
				"To send its sound, re-encode the audio: ffmpeg -i IN.mp4 -c:v copy -c:a libopus OUT.mp4")
			continue
		case kind == "video":
			skip("kvsrtc sends H.264 video; re-encode with -c:v libx264 -profile:v baseline")
			continue
		case kind == "audio":
			skip("kvsrtc sends Opus audio; re-encode with -c:a libopus")
			continue
		default:
			skip("not audio or video")
			continue
		}
		if t.timescale == 0 {
			return nil, nil, nil, fmt.Errorf("track %d has timescale 0", id)
		}
		if err := t.progressiveSamples(trak); err != nil {
			return nil, nil, nil, fmt.Errorf("track %d: %w", id, err)
		}
		if err := t.fragmentSamples(f, moov); err != nil {
			return nil, nil, nil, fmt.Errorf("track %d: %w", id, err)
		}
		if len(t.samples) == 0 {
			if t == video {
				video = nil
			} else {
				audio = nil
			}
			skip("the track has no samples")
		}
	}
	return video, audio, skipped, nil
}

// progressiveSamples adds the samples listed in the track's sample table
// (stbl) of a progressive file.
func (t *mp4Track) progressiveSamples(trak *mp4.TrakBox) error {
	stbl := trak.Mdia.Minf.Stbl
	if stbl.Stsz == nil || stbl.Stsc == nil || stbl.Stts == nil {
		return nil // a fragmented file's empty table
	}
	n := stbl.Stsz.GetNrSamples()
	if n == 0 {
		return nil
	}
	if n > maxMP4Samples {
		return fmt.Errorf("%d samples, more than %d", n, maxMP4Samples)
	}
	if stbl.Stco == nil && stbl.Co64 == nil {
		return errors.New("sample table without chunk offsets")
	}
	chunks, err := stbl.Stsc.GetContainingChunks(1, n)
	if err != nil {
		return err
	}
	var ctts0 int32
	for i, ch := range chunks {
		var off uint64
		if stbl.Stco != nil {
			off, err = stbl.Stco.GetOffset(int(ch.ChunkNr))
		} else {
			off, err = stbl.Co64.GetOffset(int(ch.ChunkNr))
		}
		if err != nil {
			return err
		}
		for nr := ch.StartSampleNr; nr < ch.StartSampleNr+ch.NrSamples && nr <= n; nr++ {
			size := stbl.Stsz.GetSampleSize(int(nr))
			t.samples = append(t.samples, mp4Sample{off: off, size: size, dur: stbl.Stts.GetDur(nr)})
			off += uint64(size)
			if stbl.Ctts != nil {
				c := stbl.Ctts.GetCompositionTimeOffset(nr)
				if i == 0 && nr == ch.StartSampleNr {
					ctts0 = c
				} else if c != ctts0 {
					t.reordered = true
				}
			}
		}
	}
	return nil
}

// fragmentSamples adds the samples of the track in a fragmented file's
// movie fragments (moof + mdat), in file order.
func (t *mp4Track) fragmentSamples(f *mp4.File, moov *mp4.MoovBox) error {
	var trex *mp4.TrexBox
	if moov.Mvex != nil {
		for _, x := range moov.Mvex.Trexs {
			if x.TrackID == t.id {
				trex = x
			}
		}
	}
	for _, seg := range f.Segments {
		for _, frag := range seg.Fragments {
			if frag.Moof == nil {
				continue
			}
			for _, traf := range frag.Moof.Trafs {
				if traf.Tfhd == nil || traf.Tfhd.TrackID != t.id {
					continue
				}
				if err := t.trafSamples(frag.Moof, traf, trex); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (t *mp4Track) trafSamples(moof *mp4.MoofBox, traf *mp4.TrafBox, trex *mp4.TrexBox) error {
	tfhd := traf.Tfhd
	for _, trun := range traf.Truns {
		trun.AddSampleDefaultValues(tfhd, trex)
		base := moof.StartPos // default-base-is-moof, and the default without it (ISO/IEC 14496-12 8.8.7.1)
		if tfhd.HasBaseDataOffset() {
			base = tfhd.BaseDataOffset
		}
		off := int64(base)
		if trun.HasDataOffset() {
			off += int64(trun.DataOffset)
		}
		if off < 0 {
			return errors.New("negative sample data offset in a track fragment")
		}
		if len(t.samples)+int(trun.SampleCount()) > maxMP4Samples {
			return fmt.Errorf("more than %d samples", maxMP4Samples)
		}
		for i, s := range trun.GetSamples() {
			if i > 0 && s.CompositionTimeOffset != trun.GetSamples()[0].CompositionTimeOffset {
				t.reordered = true
			}
			t.samples = append(t.samples, mp4Sample{off: uint64(off), size: s.Size, dur: s.Dur})
			off += int64(s.Size)
		}
	}
	return nil
}

// newMP4Source builds a looping Source over one track.
func newMP4Source(path string, t *mp4Track, cfg SourceConfig) (*source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	open := func() (frameReader, error) { return &mp4FrameReader{f: f, t: t}, nil }
	rd, _ := open()
	return &source{
		codec: t.codec, name: fmt.Sprintf("%s#%d", path, t.id), log: cfg.logger(), open: open, rd: rd, closer: f,
		loop: !cfg.Once, paced: !cfg.Unpaced,
	}, nil
}

// maxMP4Sample bounds one sample read from an MP4 file.
const maxMP4Sample = maxAccessUnit

// mp4FrameReader reads one pass over an MP4 track.
type mp4FrameReader struct {
	f       io.ReaderAt
	t       *mp4Track
	i       int
	lastDur time.Duration
	ps      paramSets // latest parameter sets (H.264)
	buf     []byte
}

func (r *mp4FrameReader) next() ([]byte, time.Duration, bool, error) {
	if r.i >= len(r.t.samples) {
		return nil, 0, false, io.EOF
	}
	s := r.t.samples[r.i]
	r.i++
	if s.size > maxMP4Sample {
		return nil, 0, false, fmt.Errorf("%w: MP4 sample %d is %d bytes, above %d", ErrInvalidData, r.i, s.size, maxMP4Sample)
	}
	if cap(r.buf) < int(s.size) {
		r.buf = make([]byte, s.size)
	}
	buf := r.buf[:s.size]
	if _, err := r.f.ReadAt(buf, int64(s.off)); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, false, fmt.Errorf("%w: MP4 sample %d lies past the end of the file", ErrTruncated, r.i)
		}
		return nil, 0, false, err
	}
	dur := time.Duration(uint64(s.dur) * uint64(time.Second) / uint64(r.t.timescale))
	if dur <= 0 {
		dur = r.lastDur
		if dur == 0 {
			dur = time.Second / DefaultFPS
		}
	}
	r.lastDur = dur
	if r.t.codec != rtc.CodecH264 {
		return bytes.Clone(buf), dur, true, nil
	}
	if r.ps.sps == nil && r.ps.pps == nil {
		r.ps = paramSets{sps: r.t.sps, pps: r.t.pps}
	}
	au, key, err := avccToAnnexB(buf, &r.ps)
	if err != nil {
		return nil, 0, false, fmt.Errorf("MP4 sample %d: %w", r.i, err)
	}
	return au, dur, key, nil
}
