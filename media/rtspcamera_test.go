package media

// A small RTSP server for the tests: a real camera on loopback that ffmpeg
// (the RTSP client of OpenRTSP) talks to over RTSP 1.0 with RTP/AVP/TCP
// interleaved, sending H.264 (RFC 6184) packetized by pion. It is
// exported to the media_test package too (test files only).

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// RTSPTestCamera serves an H.264 Annex-B clip, looped at 30 fps, to every
// RTSP client that PLAYs rtsp://ADDR/live.
type RTSPTestCamera struct {
	URL  string
	Addr string

	aus      [][]byte
	sps, pps []byte // in the SDP only, if set
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	plays    atomic.Int32
	once     sync.Once
}

// StartRTSPTestCamera listens on addr ("127.0.0.1:0" for any port) and
// serves h264 (Annex-B). Close (also run at the test's end) stops it.
func StartRTSPTestCamera(t testing.TB, addr string, h264 []byte) *RTSPTestCamera {
	t.Helper()
	return startRTSPTestCamera(t, addr, h264, false)
}

// startRTSPTestCamera starts a camera; with spropOnly it sends the SPS
// and PPS only in its SDP (sprop-parameter-sets, RFC 6184 8.1), as some
// cameras do, never in band.
func startRTSPTestCamera(t testing.TB, addr string, h264 []byte, spropOnly bool) *RTSPTestCamera {
	t.Helper()
	rd, err := newH264AUReader(bytes.NewReader(h264))
	if err != nil {
		t.Fatal(err)
	}
	c := &RTSPTestCamera{conns: map[net.Conn]struct{}{}}
	for {
		au, _, err := rd.next()
		if err != nil {
			break
		}
		if spropOnly {
			var kept []byte
			for nal := range AnnexBNALs(au) {
				switch nal[0] & 0x1f {
				case nalSPS:
					c.sps = bytes.Clone(nal)
				case nalPPS:
					c.pps = bytes.Clone(nal)
				default:
					kept = appendAnnexB(kept, nal)
				}
			}
			au = kept
		}
		c.aus = append(c.aus, au)
	}
	if len(c.aus) == 0 {
		t.Fatal("rtsp test camera: no access units")
	}
	// The port may still be held by the previous camera's last
	// connections for a moment after a restart.
	for i := 0; ; i++ {
		c.ln, err = net.Listen("tcp", addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.Addr = c.ln.Addr().String()
	c.URL = "rtsp://" + c.Addr + "/live"
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(c.Close)
	return c
}

// Plays is how many PLAY requests the camera has served.
func (c *RTSPTestCamera) Plays() int { return int(c.plays.Load()) }

// Close stops listening, drops every connection and waits.
func (c *RTSPTestCamera) Close() {
	c.once.Do(func() {
		c.ln.Close()
		c.mu.Lock()
		for conn := range c.conns {
			conn.Close()
		}
		c.mu.Unlock()
		c.wg.Wait()
	})
}

func (c *RTSPTestCamera) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.conns[conn] = struct{}{}
		c.mu.Unlock()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer func() {
				c.mu.Lock()
				delete(c.conns, conn)
				c.mu.Unlock()
				conn.Close()
			}()
			c.serve(conn)
		}()
	}
}

// serve answers one client's requests; after PLAY it streams until the
// connection ends.
func (c *RTSPTestCamera) serve(conn net.Conn) {
	br := bufio.NewReader(conn)
	tp := textproto.NewReader(br)
	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := conn.Write(b)
		return err
	}
	stop := make(chan struct{})
	var streaming sync.WaitGroup
	defer func() {
		close(stop)
		conn.Close()
		streaming.Wait()
	}()
	for {
		b, err := br.Peek(1)
		if err != nil {
			return
		}
		if b[0] == '$' { // interleaved RTCP from the client
			var hdr [4]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return
			}
			if _, err := br.Discard(int(binary.BigEndian.Uint16(hdr[2:]))); err != nil {
				return
			}
			continue
		}
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		hdr, err := tp.ReadMIMEHeader()
		if err != nil && !errors.Is(err, io.EOF) {
			return
		}
		if n := hdr.Get("Content-Length"); n != "" {
			var size int
			fmt.Sscan(n, &size)
			if _, err := br.Discard(size); err != nil {
				return
			}
		}
		method, _, _ := strings.Cut(line, " ")
		reply := func(status string, headers []string, body string) error {
			var sb strings.Builder
			fmt.Fprintf(&sb, "RTSP/1.0 %s\r\nCSeq: %s\r\n", status, hdr.Get("CSeq"))
			for _, h := range headers {
				sb.WriteString(h + "\r\n")
			}
			if body != "" {
				fmt.Fprintf(&sb, "Content-Length: %d\r\n", len(body))
			}
			sb.WriteString("\r\n" + body)
			return write([]byte(sb.String()))
		}
		switch method {
		case "OPTIONS":
			err = reply("200 OK", []string{"Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"}, "")
		case "DESCRIBE":
			sdp := "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=kvsrtc test camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n" +
				"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1" + c.sprop() + "\r\na=control:trackID=0\r\n"
			err = reply("200 OK", []string{"Content-Type: application/sdp", "Content-Base: " + c.URL + "/"}, sdp)
		case "SETUP":
			if !strings.Contains(hdr.Get("Transport"), "TCP") {
				err = reply("461 Unsupported Transport", nil, "")
				break
			}
			err = reply("200 OK", []string{"Transport: RTP/AVP/TCP;unicast;interleaved=0-1", "Session: 4711;timeout=60"}, "")
		case "PLAY":
			err = reply("200 OK", []string{"Session: 4711"}, "")
			c.plays.Add(1)
			streaming.Add(1)
			go func() {
				defer streaming.Done()
				c.stream(write, stop)
			}()
		case "GET_PARAMETER", "SET_PARAMETER":
			err = reply("200 OK", []string{"Session: 4711"}, "")
		case "TEARDOWN":
			_ = reply("200 OK", nil, "")
			return
		default:
			err = reply("501 Not Implemented", nil, "")
		}
		if err != nil {
			return
		}
	}
}

// sprop is the fmtp parameter with the SPS and PPS, if the camera sends
// them only there.
func (c *RTSPTestCamera) sprop() string {
	if c.sps == nil {
		return ""
	}
	return ";sprop-parameter-sets=" + base64.StdEncoding.EncodeToString(c.sps) + "," + base64.StdEncoding.EncodeToString(c.pps)
}

// stream sends the clip as RTP over the RTSP connection, 30 frames a
// second, until stop or a write fails.
func (c *RTSPTestCamera) stream(write func([]byte) error, stop <-chan struct{}) {
	p := rtp.NewPacketizer(1200, 96, 0x4711, &codecs.H264Payloader{}, rtp.NewRandomSequencer(), 90000)
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i := 0; ; i++ {
		for _, pkt := range p.Packetize(c.aus[i%len(c.aus)], 3000) {
			raw, err := pkt.Marshal()
			if err != nil {
				return
			}
			frame := append([]byte{'$', 0, byte(len(raw) >> 8), byte(len(raw))}, raw...)
			if write(frame) != nil {
				return
			}
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}
