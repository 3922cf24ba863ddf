package media

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

const (
	ivfFileHeaderLen  = 32
	ivfFrameHeaderLen = 12
	maxIVFFrame       = 16 << 20
)

// ivfFrame is one frame with its presentation time.
type ivfFrame struct {
	data []byte
	pts  time.Duration
}

// ivfFrameReader reads VP8 frames with pion's ivfreader. It peeks at every
// frame header first, to refuse absurd frame sizes before pion allocates
// them and to take the raw pts for timing, and reads one frame ahead so
// that each frame's duration is the gap to the next one.
type ivfFrameReader struct {
	br       *bufio.Reader
	r        *ivfreader.IVFReader
	hdr      *ivfreader.IVFFileHeader
	num, den uint64
	frameDur time.Duration
	ahead    *ivfFrame
	aheadErr error
	frames   int
}

func newIVFFrameReader(br *bufio.Reader) (*ivfFrameReader, error) {
	head, err := br.Peek(ivfFileHeaderLen)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: IVF file header cut short (%d of 32 bytes)", ErrTruncated, len(head))
		}
		return nil, err
	}
	if fourcc := string(head[8:12]); fourcc != "VP80" {
		return nil, &FormatError{Format: "IVF/" + printable(fourcc), Err: ErrUnsupportedFormat,
			Detail: "IVF video must be VP8 (kvsrtc sends VP8 or H.264)",
			Hint:   "convert with: ffmpeg -i in.ivf -c:v libvpx -b:v 1M -auto-alt-ref 0 -f ivf out.ivf"}
	}
	r, hdr, err := ivfreader.NewWith(br)
	if err != nil {
		return nil, fmt.Errorf("%w: IVF header: %w", ErrInvalidData, err)
	}
	num, den := uint64(hdr.TimebaseNumerator), uint64(hdr.TimebaseDenominator)
	// Header bytes 16-19 hold the rate (time base denominator) and 20-23 the
	// scale (numerator): one pts unit is num/den seconds.
	frameDur := time.Duration(num * uint64(time.Second) / den)
	if frameDur < time.Millisecond || frameDur > time.Second {
		frameDur = time.Second / 30
	}
	return &ivfFrameReader{br: br, r: r, hdr: hdr, num: num, den: den, frameDur: frameDur}, nil
}

func printable(s string) string {
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

// read returns the next frame, io.EOF at a clean end.
func (v *ivfFrameReader) read() (*ivfFrame, error) {
	h, err := v.br.Peek(ivfFrameHeaderLen)
	if err != nil {
		if errors.Is(err, io.EOF) {
			if len(h) == 0 {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("%w: IVF frame %d header cut short", ErrTruncated, v.frames)
		}
		return nil, err
	}
	size := binary.LittleEndian.Uint32(h[:4])
	rawPTS := binary.LittleEndian.Uint64(h[4:12])
	if size > maxIVFFrame {
		return nil, fmt.Errorf("%w: IVF frame %d claims %d bytes", ErrInvalidData, v.frames, size)
	}
	data, _, err := v.r.ParseNextFrame()
	if err != nil {
		// The header was there, so the payload is short.
		return nil, fmt.Errorf("%w: IVF frame %d: %v", ErrTruncated, v.frames, err)
	}
	v.frames++
	pts := time.Duration(float64(rawPTS) * float64(v.num) / float64(v.den) * float64(time.Second))
	return &ivfFrame{data: data, pts: pts}, nil
}

func (v *ivfFrameReader) next() ([]byte, time.Duration, bool, error) {
	for {
		cur := v.ahead
		if cur == nil {
			if v.aheadErr != nil {
				err := v.aheadErr
				v.aheadErr = nil
				return nil, 0, false, err
			}
			f, err := v.read()
			if err != nil {
				return nil, 0, false, err
			}
			cur = f
		}
		v.ahead = nil
		nxt, err := v.read()
		dur := v.frameDur
		if err == nil {
			if d := nxt.pts - cur.pts; d > 0 && d < 10*time.Second {
				dur = d
			}
			v.ahead = nxt
		} else if !errors.Is(err, io.EOF) {
			v.aheadErr = err
		}
		if len(cur.data) == 0 {
			continue // empty frame: nothing to send
		}
		return cur.data, dur, VP8IsKeyframe(cur.data), nil
	}
}
