package player

import (
	"net"
	"net/http"
	"sync"
)

// connCap closes connections beyond max open at once (a flood of idle or
// slow connections cannot exhaust file descriptors or memory). It works
// through http.Server.ConnState, so the listener (often a tls.Listener)
// and its connections stay as they are.
type connCap struct {
	max int
	mu  sync.Mutex
	n   int
}

func (c *connCap) connState(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateNew:
		c.n++
		if c.n > c.max {
			_ = conn.Close() // it still reaches StateClosed, which counts it out
		}
	case http.StateClosed, http.StateHijacked:
		c.n--
	}
}
