package media

import (
	"errors"
	"fmt"
	"io"

	"github.com/pion/webrtc/v4/pkg/media/h264reader"
)

// maxAccessUnit bounds one H.264 access unit read from a file or stream.
const maxAccessUnit = 16 << 20

// h264AUReader groups the NAL units from pion's h264reader into access
// units (one per picture). An access unit ends where the next one starts:
// at an AUD, SPS, PPS or SEI, or at a slice whose first_mb_in_slice is 0,
// after a slice has been seen (ITU-T H.264 7.4.1.2.3). SPS and PPS are
// remembered and put in front of IDR access units that lack them, so every
// keyframe can be decoded on its own.
type h264AUReader struct {
	r        *h264reader.H264Reader
	pending  []byte // first NAL of the next access unit
	sps, pps []byte
	nals     [][]byte
	eof      bool
}

func newH264AUReader(r io.Reader) (*h264AUReader, error) {
	hr, err := h264reader.NewReader(r)
	if err != nil {
		return nil, err
	}
	return &h264AUReader{r: hr}, nil
}

// startsAU reports whether nal begins a new access unit once the current
// one holds a slice.
func startsAU(nal []byte) bool {
	switch nal[0] & 0x1f {
	case nalAUD, nalSPS, nalPPS, nalSEI, 14, 15, 16, 17, 18:
		return true
	case nalSlice, nalIDR:
		// first_mb_in_slice is ue(v); 0 is coded as a single 1 bit.
		return len(nal) > 1 && nal[1]&0x80 != 0
	}
	return false
}

func isVCL(t byte) bool { return t >= 1 && t <= 5 }

func (a *h264AUReader) nextNAL() ([]byte, error) {
	if a.pending != nil {
		n := a.pending
		a.pending = nil
		return n, nil
	}
	if a.eof {
		return nil, io.EOF
	}
	nal, err := a.r.NextNAL()
	if err != nil {
		if errors.Is(err, io.EOF) {
			a.eof = true
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			a.eof = true
			return nil, io.EOF
		}
		return nil, err
	}
	return nal.Data, nil
}

// next returns the next access unit in Annex-B form and whether it is a
// decodable keyframe (IDR with SPS and PPS).
func (a *h264AUReader) next() ([]byte, bool, error) {
	a.nals = a.nals[:0]
	hasVCL, hasIDR, hasSPS, hasPPS := false, false, false, false
	size := 0
	for {
		nal, err := a.nextNAL()
		if errors.Is(err, io.EOF) {
			if hasVCL {
				break
			}
			return nil, false, io.EOF // trailing parameter sets without a picture
		}
		if err != nil {
			return nil, false, err
		}
		if len(nal) == 0 {
			continue
		}
		if nal[0]&0x80 != 0 {
			return nil, false, fmt.Errorf("%w: H.264 NAL unit with forbidden_zero_bit set", ErrInvalidData)
		}
		if hasVCL && startsAU(nal) {
			a.pending = nal
			break
		}
		t := nal[0] & 0x1f
		switch t {
		case nalSPS:
			a.sps, hasSPS = nal, true
		case nalPPS:
			a.pps, hasPPS = nal, true
		case nalIDR:
			hasIDR = true
		}
		if isVCL(t) {
			hasVCL = true
		}
		size += len(nal) + 4
		if size > maxAccessUnit {
			return nil, false, fmt.Errorf("%w: H.264 access unit larger than %d bytes", ErrInvalidData, maxAccessUnit)
		}
		a.nals = append(a.nals, nal)
	}

	key := hasIDR && a.sps != nil && a.pps != nil
	var prefix [][]byte
	if hasIDR {
		if !hasSPS && a.sps != nil {
			prefix = append(prefix, a.sps)
			size += len(a.sps) + 4
		}
		if !hasPPS && a.pps != nil {
			prefix = append(prefix, a.pps)
			size += len(a.pps) + 4
		}
	}
	out := make([]byte, 0, size)
	for _, n := range prefix {
		out = appendAnnexB(out, n)
	}
	for _, n := range a.nals {
		out = appendAnnexB(out, n)
	}
	clear(a.nals)
	return out, key, nil
}
