package media

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/Eyevinn/mp4ff/avc"
)

// paramSets are the latest H.264 SPS and PPS of a stream.
type paramSets struct{ sps, pps []byte }

// avccToAnnexB converts an AVC sample (NAL units with 4-byte lengths, as
// in MP4 and FLV) to Annex-B. In-band SPS and PPS replace those in ps (a
// camera that changes resolution sends new ones); an IDR picture that
// lacks them gets ps's in front, so every keyframe decodes on its own.
func avccToAnnexB(sample []byte, ps *paramSets) ([]byte, bool, error) {
	var nals [][]byte
	hasIDR, hasSPS, hasPPS := false, false, false
	for b := sample; len(b) > 0; {
		if len(b) < 4 {
			return nil, false, fmt.Errorf("%w: H.264 sample ends inside a NAL length", ErrInvalidData)
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) {
			return nil, false, fmt.Errorf("%w: H.264 NAL length %d beyond the sample", ErrInvalidData, n)
		}
		nal := b[:n]
		b = b[n:]
		if len(nal) == 0 {
			continue
		}
		switch nal[0] & 0x1f {
		case nalSPS:
			ps.sps, hasSPS = bytes.Clone(nal), true
		case nalPPS:
			ps.pps, hasPPS = bytes.Clone(nal), true
		case nalIDR:
			hasIDR = true
		}
		nals = append(nals, nal)
	}
	out := make([]byte, 0, len(sample)+len(ps.sps)+len(ps.pps)+16)
	if hasIDR {
		if !hasSPS && ps.sps != nil {
			out = appendAnnexB(out, ps.sps)
		}
		if !hasPPS && ps.pps != nil {
			out = appendAnnexB(out, ps.pps)
		}
	}
	for _, nal := range nals {
		out = appendAnnexB(out, nal)
	}
	return out, hasIDR && ps.sps != nil && ps.pps != nil, nil
}

// maxFLVTag bounds one FLV tag.
const maxFLVTag = maxAccessUnit

// flvVideoReader reads the H.264 video of an FLV stream (what ffmpeg
// writes with `-c:v copy -f flv -`), keeping each frame's decode time.
// FLV (Adobe Flash Video File Format Specification v10.1, annex E) is the
// simplest container ffmpeg can stream through a pipe with timestamps.
type flvVideoReader struct {
	br     *bufio.Reader
	ps     paramSets
	header bool
}

// flvFrame is one access unit of an FLV stream.
type flvFrame struct {
	data []byte // Annex-B
	key  bool
	dts  int64 // milliseconds, extended past 32 bits
}

func newFLVVideoReader(r io.Reader) *flvVideoReader {
	return &flvVideoReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next H.264 access unit; io.EOF at the end.
func (f *flvVideoReader) next() (flvFrame, error) {
	if !f.header {
		var h [13]byte // header (9) + PreviousTagSize0 (4)
		if _, err := io.ReadFull(f.br, h[:]); err != nil {
			return flvFrame{}, err
		}
		if string(h[:3]) != "FLV" {
			return flvFrame{}, fmt.Errorf("%w: not an FLV stream", ErrInvalidData)
		}
		if skip := int(binary.BigEndian.Uint32(h[5:9])) - 9; skip > 0 {
			if _, err := f.br.Discard(skip); err != nil {
				return flvFrame{}, err
			}
		}
		f.header = true
	}
	for {
		var th [11]byte
		if _, err := io.ReadFull(f.br, th[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return flvFrame{}, err
		}
		size := int(th[1])<<16 | int(th[2])<<8 | int(th[3])
		ts := int64(uint32(th[7])<<24 | uint32(th[4])<<16 | uint32(th[5])<<8 | uint32(th[6]))
		if size > maxFLVTag {
			return flvFrame{}, fmt.Errorf("%w: FLV tag of %d bytes", ErrInvalidData, size)
		}
		body := make([]byte, size+4) // + PreviousTagSize
		if _, err := io.ReadFull(f.br, body); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return flvFrame{}, err
		}
		body = body[:size]
		if th[0]&0x1f != 9 || len(body) < 5 { // not video
			continue
		}
		if body[0]&0x80 != 0 || body[0]&0x0f != 7 {
			return flvFrame{}, fmt.Errorf("%w: the video is not H.264 (FLV video tag %#x)", ErrUnsupportedFormat, body[0])
		}
		switch body[1] { // AVCPacketType
		case 0: // sequence header: AVCDecoderConfigurationRecord
			rec, err := avc.DecodeAVCDecConfRec(body[5:])
			if err != nil {
				return flvFrame{}, fmt.Errorf("%w: FLV AVC sequence header: %w", ErrInvalidData, err)
			}
			if len(rec.SPSnalus) > 0 {
				f.ps.sps = rec.SPSnalus[0]
			}
			if len(rec.PPSnalus) > 0 {
				f.ps.pps = rec.PPSnalus[0]
			}
		case 1: // NAL units
			au, key, err := avccToAnnexB(body[5:], &f.ps)
			if err != nil {
				return flvFrame{}, err
			}
			if len(au) == 0 {
				continue
			}
			return flvFrame{data: au, key: key, dts: ts}, nil
		}
	}
}
