// Package testsrc holds kvsrtc's built-in test media, embedded in the binary:
// a 640x360, 30 fps moving test pattern with a burnt-in clock and frame
// counter (H.264 constrained baseline Annex-B and VP8 IVF) and a 48 kHz Opus
// tone in Ogg that beeps once a second. generate.sh in this directory holds
// the exact ffmpeg commands that made the files.
//
// The returned slices are shared: read them, never modify them (wrap them in
// a bytes.Reader).
package testsrc

import (
	_ "embed"
	"time"
)

//go:embed pattern.h264
var patternH264 []byte

//go:embed pattern.ivf
var patternIVF []byte

//go:embed tone.ogg
var toneOgg []byte

// Properties of the embedded files (see generate.sh).
const (
	Width    = 640             // video width in pixels
	Height   = 360             // video height in pixels
	FPS      = 30              // video frames per second
	Frames   = 180             // video frames per file
	GOP      = 30              // frames from one keyframe to the next
	Duration = 6 * time.Second // length of every file

	// OpusPackets is the number of 20 ms Opus packets in the tone
	// (6 s plus the encoder's pre-skip rounds up to one more packet).
	OpusPackets = 301
)

// H264 returns the test pattern as H.264 constrained baseline (level 3.1)
// Annex-B with SPS and PPS in front of every IDR. Read-only.
func H264() []byte { return patternH264 }

// VP8IVF returns the test pattern as VP8 in an IVF container. Read-only.
func VP8IVF() []byte { return patternIVF }

// OpusOgg returns the test tone as mono Opus (20 ms packets) in Ogg. Read-only.
func OpusOgg() []byte { return toneOgg }
