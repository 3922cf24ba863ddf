package media

import (
	"errors"
	"fmt"
)

// SPS holds the fields of an H.264 sequence parameter set that kvsrtc uses.
type SPS struct {
	ProfileIDC      uint8 // profile_idc: 66 baseline, 77 main, 100 high, ...
	ConstraintFlags uint8 // constraint_set0..5 flags (the byte after profile_idc)
	LevelIDC        uint8 // level_idc: 31 for level 3.1
	ID              uint32
	ChromaFormatIDC uint32 // 1 (4:2:0) unless the profile says otherwise
	FrameMBsOnly    bool
	Width, Height   int // display size in pixels, after frame cropping
}

// ProfileLevelID returns the SDP profile-level-id of the SPS, e.g. "42c01f".
func (s SPS) ProfileLevelID() string {
	return fmt.Sprintf("%02x%02x%02x", s.ProfileIDC, s.ConstraintFlags, s.LevelIDC)
}

// maxDimension bounds the decoded size; real H.264 tops out at 8192x4320 (level 6.2).
const maxDimension = 16384

var errBitsExhausted = errors.New("SPS ends early")

// bitReader reads an RBSP (emulation prevention bytes already removed).
type bitReader struct {
	b   []byte
	pos int // bit position
}

func (r *bitReader) u(n int) (uint32, error) {
	var v uint32
	for range n {
		if r.pos >= len(r.b)*8 {
			return 0, errBitsExhausted
		}
		bit := (r.b[r.pos/8] >> (7 - uint(r.pos%8))) & 1
		v = v<<1 | uint32(bit)
		r.pos++
	}
	return v, nil
}

func (r *bitReader) flag() (bool, error) {
	v, err := r.u(1)
	return v == 1, err
}

// ue reads an unsigned Exp-Golomb code (H.264 9.1).
func (r *bitReader) ue() (uint32, error) {
	zeros := 0
	for {
		bit, err := r.u(1)
		if err != nil {
			return 0, err
		}
		if bit == 1 {
			break
		}
		zeros++
		if zeros > 31 {
			return 0, errors.New("Exp-Golomb code longer than 32 bits")
		}
	}
	rest, err := r.u(zeros)
	if err != nil {
		return 0, err
	}
	return uint32((uint64(1)<<zeros)-1) + rest, nil
}

// se reads a signed Exp-Golomb code (H.264 9.1.1).
func (r *bitReader) se() (int32, error) {
	k, err := r.ue()
	if err != nil {
		return 0, err
	}
	if k%2 == 1 {
		return int32((k + 1) / 2), nil
	}
	return -int32(k / 2), nil
}

// unescapeRBSP removes emulation prevention bytes (00 00 03 -> 00 00).
func unescapeRBSP(nal []byte) []byte {
	out := make([]byte, 0, len(nal))
	zeros := 0
	for _, c := range nal {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// skipScalingList skips one scaling_list() (H.264 7.3.2.1.1.1).
func skipScalingList(r *bitReader, size int) error {
	last, next := int32(8), int32(8)
	for range size {
		if next != 0 {
			delta, err := r.se()
			if err != nil {
				return err
			}
			next = (last + delta + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
	return nil
}

// ParseSPS parses an H.264 sequence parameter set NAL unit (starting with
// its NAL header byte, without a start code) far enough to get the profile,
// level and the cropped picture size (ITU-T H.264 7.3.2.1.1 and 7.4.2.1.1).
// Errors wrap ErrInvalidData.
func ParseSPS(nal []byte) (SPS, error) {
	s, err := parseSPS(nal)
	if err != nil {
		return SPS{}, fmt.Errorf("%w: H.264 SPS: %w", ErrInvalidData, err)
	}
	return s, nil
}

func parseSPS(nal []byte) (SPS, error) {
	if len(nal) < 4 {
		return SPS{}, errors.New("shorter than 4 bytes")
	}
	if nal[0]&0x1f != nalSPS {
		return SPS{}, fmt.Errorf("NAL type %d is not an SPS (7)", nal[0]&0x1f)
	}
	r := &bitReader{b: unescapeRBSP(nal[1:])}
	var s SPS
	p, _ := r.u(8)
	c, _ := r.u(8)
	l, _ := r.u(8)
	s.ProfileIDC, s.ConstraintFlags, s.LevelIDC = uint8(p), uint8(c), uint8(l)
	var err error
	if s.ID, err = r.ue(); err != nil {
		return SPS{}, err
	}
	if s.ID > 31 {
		return SPS{}, fmt.Errorf("seq_parameter_set_id %d above 31", s.ID)
	}
	s.ChromaFormatIDC = 1
	separateColourPlane := false
	switch s.ProfileIDC {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		if s.ChromaFormatIDC, err = r.ue(); err != nil {
			return SPS{}, err
		}
		if s.ChromaFormatIDC > 3 {
			return SPS{}, fmt.Errorf("chroma_format_idc %d above 3", s.ChromaFormatIDC)
		}
		if s.ChromaFormatIDC == 3 {
			if separateColourPlane, err = r.flag(); err != nil {
				return SPS{}, err
			}
		}
		if _, err = r.ue(); err != nil { // bit_depth_luma_minus8
			return SPS{}, err
		}
		if _, err = r.ue(); err != nil { // bit_depth_chroma_minus8
			return SPS{}, err
		}
		if _, err = r.u(1); err != nil { // qpprime_y_zero_transform_bypass_flag
			return SPS{}, err
		}
		scaling, err := r.flag()
		if err != nil {
			return SPS{}, err
		}
		if scaling {
			lists := 8
			if s.ChromaFormatIDC == 3 {
				lists = 12
			}
			for i := range lists {
				present, err := r.flag()
				if err != nil {
					return SPS{}, err
				}
				if !present {
					continue
				}
				size := 16
				if i >= 6 {
					size = 64
				}
				if err := skipScalingList(r, size); err != nil {
					return SPS{}, err
				}
			}
		}
	}
	if _, err = r.ue(); err != nil { // log2_max_frame_num_minus4
		return SPS{}, err
	}
	pocType, err := r.ue()
	if err != nil {
		return SPS{}, err
	}
	switch pocType {
	case 0:
		if _, err = r.ue(); err != nil { // log2_max_pic_order_cnt_lsb_minus4
			return SPS{}, err
		}
	case 1:
		if _, err = r.u(1); err != nil { // delta_pic_order_always_zero_flag
			return SPS{}, err
		}
		if _, err = r.se(); err != nil { // offset_for_non_ref_pic
			return SPS{}, err
		}
		if _, err = r.se(); err != nil { // offset_for_top_to_bottom_field
			return SPS{}, err
		}
		n, err := r.ue()
		if err != nil {
			return SPS{}, err
		}
		if n > 255 {
			return SPS{}, fmt.Errorf("num_ref_frames_in_pic_order_cnt_cycle %d above 255", n)
		}
		for range n {
			if _, err = r.se(); err != nil {
				return SPS{}, err
			}
		}
	case 2:
	default:
		return SPS{}, fmt.Errorf("pic_order_cnt_type %d above 2", pocType)
	}
	if _, err = r.ue(); err != nil { // max_num_ref_frames
		return SPS{}, err
	}
	if _, err = r.u(1); err != nil { // gaps_in_frame_num_value_allowed_flag
		return SPS{}, err
	}
	wMBs, err := r.ue()
	if err != nil {
		return SPS{}, err
	}
	hMapUnits, err := r.ue()
	if err != nil {
		return SPS{}, err
	}
	if s.FrameMBsOnly, err = r.flag(); err != nil {
		return SPS{}, err
	}
	if !s.FrameMBsOnly {
		if _, err = r.u(1); err != nil { // mb_adaptive_frame_field_flag
			return SPS{}, err
		}
	}
	if _, err = r.u(1); err != nil { // direct_8x8_inference_flag
		return SPS{}, err
	}
	cropping, err := r.flag()
	if err != nil {
		return SPS{}, err
	}
	var cropL, cropR, cropT, cropB uint32
	if cropping {
		for _, v := range []*uint32{&cropL, &cropR, &cropT, &cropB} {
			if *v, err = r.ue(); err != nil {
				return SPS{}, err
			}
		}
	}

	fieldFactor := int64(2)
	if s.FrameMBsOnly {
		fieldFactor = 1
	}
	width := (int64(wMBs) + 1) * 16
	height := fieldFactor * (int64(hMapUnits) + 1) * 16
	cropUnitX, cropUnitY := int64(1), fieldFactor
	if s.ChromaFormatIDC != 0 && !separateColourPlane {
		subW, subH := int64(2), int64(2) // 4:2:0
		switch s.ChromaFormatIDC {
		case 2:
			subH = 1
		case 3:
			subW, subH = 1, 1
		}
		cropUnitX, cropUnitY = subW, subH*fieldFactor
	}
	width -= cropUnitX * (int64(cropL) + int64(cropR))
	height -= cropUnitY * (int64(cropT) + int64(cropB))
	if width <= 0 || height <= 0 || width > maxDimension || height > maxDimension {
		return SPS{}, fmt.Errorf("picture size %dx%d out of range", width, height)
	}
	s.Width, s.Height = int(width), int(height)
	return s, nil
}
