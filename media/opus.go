package media

import (
	"fmt"
	"time"
)

// OpusPacketDuration returns the audio duration of an Opus packet from its
// TOC byte and frame count (RFC 6716 section 3.1).
func OpusPacketDuration(packet []byte) (time.Duration, error) {
	if len(packet) == 0 {
		return 0, fmt.Errorf("%w: empty Opus packet", ErrInvalidData)
	}
	toc := packet[0]
	config := toc >> 3
	var frame time.Duration
	switch {
	case config < 12: // SILK-only: 10, 20, 40, 60 ms
		frame = [...]time.Duration{10, 20, 40, 60}[config&3] * time.Millisecond
	case config < 16: // hybrid: 10, 20 ms
		frame = [...]time.Duration{10, 20}[config&1] * time.Millisecond
	default: // CELT-only: 2.5, 5, 10, 20 ms
		frame = [...]time.Duration{2500, 5000, 10000, 20000}[config&3] * time.Microsecond
	}
	var frames int
	switch toc & 3 {
	case 0:
		frames = 1
	case 1, 2:
		frames = 2
	default:
		if len(packet) < 2 {
			return 0, fmt.Errorf("%w: Opus code-3 packet without frame count", ErrInvalidData)
		}
		frames = int(packet[1] & 0x3f)
		if frames == 0 {
			return 0, fmt.Errorf("%w: Opus packet with zero frames", ErrInvalidData)
		}
	}
	d := frame * time.Duration(frames)
	if d > 120*time.Millisecond {
		return 0, fmt.Errorf("%w: Opus packet of %v (over 120 ms)", ErrInvalidData, d)
	}
	return d, nil
}
