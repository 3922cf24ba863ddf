package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// Ogg framing (RFC 3533) and the Opus mapping (RFC 7845). pion's oggreader
// returns whole page payloads, but an Ogg page usually carries many Opus
// packets whose boundaries live in the page's lacing table, so pages are
// read here and only the OpusHead is handed to oggreader.ParseOpusHead.

const (
	oggHeaderLen     = 27
	oggFlagContinued = 0x01
	oggFlagBOS       = 0x02
	maxOggPacket     = 1 << 20
)

var oggCRCTable = func() *[256]uint32 {
	var t [256]uint32
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return &t
}()

func oggCRC(crc uint32, b []byte) uint32 {
	for _, c := range b {
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	return crc
}

// oggOpusReader returns the Opus packets of the first Opus stream in an Ogg
// file, skipping the OpusHead and OpusTags headers.
type oggOpusReader struct {
	r       io.Reader
	serial  uint32
	head    *oggreader.OggHeader
	pages   int
	packets [][]byte // complete packets from the current page
	partial []byte   // packet continuing on the next page
	headers int      // header packets seen (OpusHead, OpusTags)
	hdr     [oggHeaderLen]byte
	lacing  [255]byte
}

// oggPage is one parsed page.
type oggPage struct {
	flags   byte
	serial  uint32
	lacing  []byte
	payload []byte
}

func (o *oggOpusReader) readPage() (oggPage, error) {
	n, err := io.ReadFull(o.r, o.hdr[:])
	if err != nil {
		if errors.Is(err, io.EOF) && n == 0 {
			return oggPage{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return oggPage{}, fmt.Errorf("%w: Ogg page %d header cut short", ErrTruncated, o.pages)
		}
		return oggPage{}, err
	}
	h := o.hdr[:]
	if !bytes.Equal(h[:4], []byte("OggS")) {
		return oggPage{}, fmt.Errorf("%w: Ogg page %d: no OggS capture pattern", ErrInvalidData, o.pages)
	}
	if h[4] != 0 {
		return oggPage{}, fmt.Errorf("%w: Ogg page %d: stream structure version %d", ErrInvalidData, o.pages, h[4])
	}
	p := oggPage{flags: h[5], serial: binary.LittleEndian.Uint32(h[14:18])}
	wantCRC := binary.LittleEndian.Uint32(h[22:26])
	nseg := int(h[26])
	p.lacing = o.lacing[:nseg]
	if _, err := io.ReadFull(o.r, p.lacing); err != nil {
		return oggPage{}, o.cutShort(err)
	}
	size := 0
	for _, l := range p.lacing {
		size += int(l)
	}
	p.payload = make([]byte, size)
	if _, err := io.ReadFull(o.r, p.payload); err != nil {
		return oggPage{}, o.cutShort(err)
	}
	copy(h[22:26], []byte{0, 0, 0, 0})
	crc := oggCRC(oggCRC(oggCRC(0, h), p.lacing), p.payload)
	binary.LittleEndian.PutUint32(h[22:26], wantCRC)
	if crc != wantCRC {
		return oggPage{}, fmt.Errorf("%w: Ogg page %d: checksum mismatch", ErrInvalidData, o.pages)
	}
	o.pages++
	return p, nil
}

func (o *oggOpusReader) cutShort(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: Ogg page %d cut short", ErrTruncated, o.pages)
	}
	return err
}

// newOggOpusReader reads the first page, which must start an Opus stream.
func newOggOpusReader(r io.Reader) (*oggOpusReader, error) {
	o := &oggOpusReader{r: r}
	p, err := o.readPage()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: empty Ogg file", ErrTruncated)
	}
	if err != nil {
		return nil, err
	}
	first := p.payload
	if len(p.lacing) > 0 {
		n := 0
		for _, l := range p.lacing {
			n += int(l)
			if l < 255 {
				break
			}
		}
		first = p.payload[:n]
	}
	switch {
	case bytes.HasPrefix(first, []byte("OpusHead")):
	case bytes.HasPrefix(first, []byte("\x01vorbis")):
		return nil, &FormatError{Format: "Ogg/Vorbis", Err: ErrUnsupportedFormat,
			Detail: "audio must be Opus", Hint: "convert with: ffmpeg -i in.ogg -c:a libopus -ar 48000 out.ogg"}
	default:
		return nil, &FormatError{Format: "Ogg", Err: ErrUnsupportedFormat,
			Detail: "first stream is not Opus", Hint: "convert with: ffmpeg -i in.ogg -vn -c:a libopus -ar 48000 out.ogg"}
	}
	if p.flags&oggFlagBOS == 0 {
		return nil, fmt.Errorf("%w: OpusHead page lacks the beginning-of-stream flag", ErrInvalidData)
	}
	head, err := oggreader.ParseOpusHead(first)
	if err != nil {
		return nil, fmt.Errorf("%w: OpusHead: %w", ErrInvalidData, err)
	}
	o.head = head
	o.serial = p.serial
	o.addPage(p)
	return o, nil
}

// addPage splits a page of our stream into packets.
func (o *oggOpusReader) addPage(p oggPage) {
	if p.flags&oggFlagContinued == 0 {
		o.partial = o.partial[:0] // a dangling partial packet is lost
	}
	off := 0
	for _, l := range p.lacing {
		seg := p.payload[off : off+int(l)]
		off += int(l)
		if len(o.partial)+len(seg) > maxOggPacket {
			o.partial = o.partial[:0]
			continue
		}
		o.partial = append(o.partial, seg...)
		if l < 255 {
			pkt := bytes.Clone(o.partial)
			o.partial = o.partial[:0]
			if o.headers < 2 { // OpusHead, OpusTags
				o.headers++
				continue
			}
			if len(pkt) > 0 {
				o.packets = append(o.packets, pkt)
			}
		}
	}
}

// nextPacket returns the next Opus packet, io.EOF at the end of the stream.
func (o *oggOpusReader) nextPacket() ([]byte, error) {
	for len(o.packets) == 0 {
		p, err := o.readPage()
		if errors.Is(err, io.EOF) {
			if len(o.partial) > 0 {
				return nil, fmt.Errorf("%w: last Opus packet cut short", ErrTruncated)
			}
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		if p.serial != o.serial {
			continue // another logical stream (e.g. video in the same file)
		}
		o.addPage(p)
	}
	pkt := o.packets[0]
	o.packets[0] = nil
	o.packets = o.packets[1:]
	return pkt, nil
}
