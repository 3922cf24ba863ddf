package media

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"iter"
)

// H.264 NAL unit types (ITU-T H.264 Table 7-1) used here.
const (
	nalSlice = 1
	nalIDR   = 5
	nalSEI   = 6
	nalSPS   = 7
	nalPPS   = 8
	nalAUD   = 9
)

var startCode3 = []byte{0, 0, 1}

// annexBStartCode is the 4-byte start code written in front of every NAL.
var annexBStartCode = []byte{0, 0, 0, 1}

// AnnexBNALs iterates over the NAL units of an H.264 Annex-B byte stream
// (ITU-T H.264 Annex B): the bytes between 3- or 4-byte start codes, with
// trailing zero bytes removed. Bytes before the first start code and empty
// NAL units are skipped. The yielded slices alias b.
func AnnexBNALs(b []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		i := bytes.Index(b, startCode3)
		if i < 0 {
			return
		}
		start := i + 3
		for start <= len(b) {
			end := len(b)
			next := len(b) + 1
			if j := bytes.Index(b[start:], startCode3); j >= 0 {
				end = start + j
				next = end + 3
			}
			nal := b[start:end]
			for len(nal) > 0 && nal[len(nal)-1] == 0 {
				nal = nal[:len(nal)-1]
			}
			if len(nal) > 0 && !yield(nal) {
				return
			}
			start = next
		}
	}
}

// AnnexBToAVC appends the NAL units of the Annex-B access unit annexB to dst
// in AVC (ISO/IEC 14496-15) form, each prefixed with its 4-byte big-endian
// length, and returns the extended slice.
func AnnexBToAVC(dst, annexB []byte) []byte {
	for nal := range AnnexBNALs(annexB) {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(nal)))
		dst = append(dst, nal...)
	}
	return dst
}

// AVCDecoderConfig builds an AVCDecoderConfigurationRecord ("avcC",
// ISO/IEC 14496-15 5.3.3.1) from one SPS and one PPS NAL unit (each
// starting with its NAL header byte), with 4-byte NAL lengths. It is the
// CodecPrivate of a V_MPEG4/ISO/AVC Matroska track.
func AVCDecoderConfig(sps, pps []byte) ([]byte, error) {
	if len(sps) < 4 || sps[0]&0x1f != nalSPS {
		return nil, fmt.Errorf("%w: avcC: not an SPS NAL unit", ErrInvalidData)
	}
	if len(pps) < 1 || pps[0]&0x1f != nalPPS {
		return nil, fmt.Errorf("%w: avcC: not a PPS NAL unit", ErrInvalidData)
	}
	if len(sps) > 0xffff || len(pps) > 0xffff {
		return nil, fmt.Errorf("%w: avcC: parameter set longer than 65535 bytes", ErrInvalidData)
	}
	out := make([]byte, 0, 11+len(sps)+len(pps))
	out = append(out,
		1,      // configurationVersion
		sps[1], // AVCProfileIndication
		sps[2], // profile_compatibility
		sps[3], // AVCLevelIndication
		0xff,   // reserved (6 bits) + lengthSizeMinusOne = 3
		0xe1,   // reserved (3 bits) + numOfSequenceParameterSets = 1
	)
	out = binary.BigEndian.AppendUint16(out, uint16(len(sps)))
	out = append(out, sps...)
	out = append(out, 1) // numOfPictureParameterSets
	out = binary.BigEndian.AppendUint16(out, uint16(len(pps)))
	out = append(out, pps...)
	return out, nil
}

// h264AUInfo summarises an Annex-B access unit.
type h264AUInfo struct {
	vcl, idr bool
	sps, pps []byte // last SPS / PPS in the unit (aliasing it), nil if none
}

func inspectH264(au []byte) h264AUInfo {
	var info h264AUInfo
	for nal := range AnnexBNALs(au) {
		switch nal[0] & 0x1f {
		case nalIDR:
			info.idr, info.vcl = true, true
		case nalSlice, 2, 3, 4:
			info.vcl = true
		case nalSPS:
			info.sps = nal
		case nalPPS:
			info.pps = nal
		}
	}
	return info
}

// H264IsKeyframe reports whether the Annex-B access unit au contains an IDR
// slice.
func H264IsKeyframe(au []byte) bool { return inspectH264(au).idr }

// appendAnnexB appends nal to dst behind a 4-byte start code.
func appendAnnexB(dst, nal []byte) []byte {
	dst = append(dst, annexBStartCode...)
	return append(dst, nal...)
}
