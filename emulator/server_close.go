package emulator

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator/internal/hub"
)

// Close shuts the service down gracefully: it stops accepting, closes every
// WebSocket with 1001 (going away), stops TURN and waits for its goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		conns := make([]*wsConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- s.httpSrv.Shutdown(ctx) }()
		// net/http counts a connection that has sent no request as idle only
		// after 5 s, and Shutdown waits for it (a browser's spare socket
		// can be one): close those now, until Shutdown is done.
		var err error
		tick := time.NewTicker(20 * time.Millisecond)
	wait:
		for {
			s.closeFresh()
			select {
			case err = <-shut:
				break wait
			case <-tick.C:
			}
		}
		tick.Stop()
		for _, c := range conns {
			c.Close(hub.CloseCodeShutdown, hub.CloseReasonShutdown, false)
		}
		done := make(chan struct{})
		go func() { s.wsWG.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(shutdownWait):
			s.log.Warn("shutdown: WebSockets did not close in time; dropping them")
			for _, c := range conns {
				c.Close(hub.CloseCodeShutdown, hub.CloseReasonShutdown, true)
			}
			<-done
		}
		<-s.serveDone
		s.hub.Close()
		if s.turn != nil {
			if terr := s.turn.close(); terr != nil {
				err = errors.Join(err, terr)
			}
		}
		if s.removeCAFile {
			_ = os.Remove(s.caFile)
		}
		s.store.close()
		s.closeErr = err
		s.log.Info("kvsrtc local signaling service stopped")
	})
	return s.closeErr
}

// connState keeps the set of connections that have not sent a request.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateNew {
		s.fresh[c] = struct{}{}
	} else {
		delete(s.fresh, c)
	}
}

// closeFresh closes the connections that have not sent a request.
func (s *Server) closeFresh() {
	s.mu.Lock()
	fresh := make([]net.Conn, 0, len(s.fresh))
	for c := range s.fresh {
		fresh = append(fresh, c)
	}
	s.mu.Unlock()
	for _, c := range fresh {
		_ = c.Close()
	}
}

// track registers a WebSocket connection; false when shutting down.
func (s *Server) track(c *wsConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wsWG.Add(1)
	return true
}

func (s *Server) untrack(c *wsConn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if ok {
		s.wsWG.Done()
	}
}
