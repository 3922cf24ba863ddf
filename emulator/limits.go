package emulator

import (
	"net"
	"sync"
	"time"
)

// httpLimits are the timeouts and the connection cap of the service's HTTP
// server. WebSockets are exempt from the read and write timeouts (their
// handler clears the deadlines before the upgrade; the WebSocket code sets
// its own). Tests shorten them.
var httpLimits = struct {
	readHeader, read, write, idle time.Duration
	maxConns                      int
}{
	readHeader: 10 * time.Second,
	read:       30 * time.Second, // whole request, body included (at most 1 MiB)
	write:      30 * time.Second, // from the end of the request headers to the end of the response
	idle:       2 * time.Minute,
	maxConns:   4096,
}

// limitListener accepts at most n connections at once: Accept waits while
// n are open (the kernel's backlog holds the rest), so a flood of idle
// connections cannot exhaust file descriptors or memory.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
