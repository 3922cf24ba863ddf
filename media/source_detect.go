package media

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
)

// inputKind is a detected input format.
type inputKind int

const (
	kindUnknown inputKind = iota
	kindH264
	kindIVF
	kindOgg
)

func (k inputKind) String() string {
	return [...]string{"unknown", "H.264 Annex-B", "IVF", "Ogg"}[k]
}

func kindByExt(path string) inputKind {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".h264", ".264", ".avc", ".h26l", ".jsv", ".jvt":
		return kindH264
	case ".ivf":
		return kindIVF
	case ".ogg", ".opus", ".oga":
		return kindOgg
	}
	return kindUnknown
}

// sniff detects the format from the first bytes of the input.
func sniff(head []byte) inputKind {
	switch {
	case bytes.HasPrefix(head, []byte("DKIF")):
		return kindIVF
	case bytes.HasPrefix(head, []byte("OggS")):
		return kindOgg
	case bytes.HasPrefix(head, []byte{0, 0, 1}), bytes.HasPrefix(head, []byte{0, 0, 0, 1}):
		return kindH264
	}
	return kindUnknown
}

// unsupported builds the error for an input that is none of the formats,
// naming what it looks like and how to convert it.
func unsupported(path string, head []byte) *FormatError {
	in := path
	if in == "" {
		in = "INPUT"
	}
	convert := fmt.Sprintf("convert with: ffmpeg -i %s -c:v libx264 -profile:v baseline -bsf:v h264_mp4toannexb -f h264 out.h264", in)
	e := &FormatError{Path: path, Err: ErrUnsupportedFormat, Hint: convert,
		Detail: "expected H.264 Annex-B (.h264), VP8 in IVF (.ivf), Opus in Ogg (.ogg/.opus) or MP4 (.mp4 with H.264)"}
	switch {
	case len(head) >= 8 && string(head[4:8]) == "ftyp":
		e.Format = "MP4/QuickTime"
	case bytes.HasPrefix(head, []byte{0x1a, 0x45, 0xdf, 0xa3}):
		e.Format = "Matroska/WebM"
	case bytes.HasPrefix(head, []byte("RIFF")):
		e.Format = "RIFF (AVI/WAV)"
	case len(head) > 0 && head[0] == 0x47:
		e.Format = "MPEG-TS"
	case bytes.HasPrefix(head, []byte("ID3")), len(head) > 1 && head[0] == 0xff && head[1]&0xe0 == 0xe0:
		e.Format = "MP3/AAC audio"
		e.Hint = fmt.Sprintf("convert with: ffmpeg -i %s -vn -c:a libopus -ar 48000 out.ogg", in)
	case len(head) == 0:
		e.Err = ErrTruncated
		e.Detail = "empty input"
		e.Hint = ""
	}
	return e
}
