package emulator

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// TURN over TLS and DTLS: pion/turn serves a net.Listener by reading each
// accepted connection through its stream framer (turn.NewSTUNConn), which
// cuts STUN messages and ChannelData frames out of a byte stream, ChannelData
// padded to a multiple of 4 bytes as RFC 8656 §12.5 requires over TCP.
// A DTLS connection delivers one record per Read, one STUN message or
// ChannelData frame each, but over (D)TLS-on-UDP the padding of ChannelData
// is optional: an unpadded frame would make the framer wait for the missing
// bytes and glue the next datagram on. datagramConn pads such frames, so
// that every record is exactly one frame.
//
// trackingListener also owns the accepted connections: pion closes only
// the listener, so Close closes them too, a handshake must finish within
// turnHandshakeTimeout and a connection idle for turnIdleTimeout (longer
// than any allocation or permission refresh interval) is closed.

const (
	turnHandshakeTimeout = 10 * time.Second
	turnIdleTimeout      = 15 * time.Minute
)

type trackingListener struct {
	net.Listener
	datagram bool

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newTrackingListener(l net.Listener, datagram bool) *trackingListener {
	return &trackingListener{Listener: l, datagram: datagram, conns: map[*trackedConn]struct{}{}}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l, datagram: l.datagram}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

// Close closes the listener and every connection it accepted.
func (l *trackingListener) Close() error {
	err := l.Listener.Close()
	l.closeConns()
	return err
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[*trackedConn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

// trackedConn is an accepted TLS or DTLS connection.
type trackedConn struct {
	net.Conn
	l         *trackingListener
	datagram  bool
	handshake sync.Once
	hsErr     error
	closeOnce sync.Once
}

type handshaker interface {
	HandshakeContext(ctx context.Context) error
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.handshake.Do(func() {
		if h, ok := c.Conn.(handshaker); ok {
			ctx, cancel := context.WithTimeout(context.Background(), turnHandshakeTimeout)
			c.hsErr = h.HandshakeContext(ctx)
			cancel()
		}
	})
	if c.hsErr != nil {
		return 0, c.hsErr
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(turnIdleTimeout))
	n, err := c.Conn.Read(p)
	if err != nil || !c.datagram {
		return n, err
	}
	return padChannelData(p, n), nil
}

// padChannelData pads a ChannelData frame in p[:n] (channel numbers
// 0x4000-0x7FFF, 4-byte header with the data length) to a multiple of 4
// bytes with zeros, when p has room, and returns the new length.
func padChannelData(p []byte, n int) int {
	if n < 4 || p[0]&0xC0 != 0x40 {
		return n
	}
	want := 4 + int(binary.BigEndian.Uint16(p[2:4]))
	padded := (want + 3) &^ 3
	if n != want || padded > len(p) {
		return n
	}
	clear(p[n:padded])
	return padded
}

// Close closes the connection. Its error is dropped: it only ever says that
// the close_notify alert could not reach a client that has already gone,
// and the connection is released either way.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		_ = c.Conn.Close()
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return nil
}
