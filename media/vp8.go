package media

import "encoding/binary"

// VP8IsKeyframe reports whether frame (an unpacketised VP8 frame) is a key
// frame: bit 0 of the frame tag is 0 (RFC 6386 section 9.1).
func VP8IsKeyframe(frame []byte) bool {
	return len(frame) >= 3 && frame[0]&0x01 == 0
}

// VP8FrameSize returns the width and height coded in a VP8 key frame header
// (RFC 6386 section 9.1: 3-byte tag, start code 9d 01 2a, then 14-bit width
// and height, each with a 2-bit scale). ok is false for inter frames and
// malformed headers.
func VP8FrameSize(frame []byte) (width, height int, ok bool) {
	if len(frame) < 10 || !VP8IsKeyframe(frame) || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, 0, false
	}
	width = int(binary.LittleEndian.Uint16(frame[6:8]) & 0x3fff)
	height = int(binary.LittleEndian.Uint16(frame[8:10]) & 0x3fff)
	if width == 0 || height == 0 {
		return 0, 0, false
	}
	return width, height, true
}
