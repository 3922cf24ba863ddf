package signaling

import (
	"context"
	"errors"
	"strings"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Conn is what a Session needs of one signaling connection. *Client
// implements it.
type Conn interface {
	// Events returns the incoming events; it is closed when the
	// connection has ended (then Err is not nil).
	Events() <-chan Event
	// Send sends one message.
	Send(ctx context.Context, msg kvsproto.ClientMessage) error
	// Err returns nil while the connection is open, then why it ended.
	Err() error
	// Close closes the connection and waits for its goroutines.
	Close() error
}

var _ Conn = (*Client)(nil)

// Dialer opens signaling connections for a Session.
type Dialer interface {
	Dial(ctx context.Context) (Conn, error)
}

// DialerFunc adapts a function to Dialer.
type DialerFunc func(ctx context.Context) (Conn, error)

// Dial calls f.
func (f DialerFunc) Dial(ctx context.Context) (Conn, error) { return f(ctx) }

// ConfigDialer dials with Dial and a fixed Config. When the service
// refuses the signing time (a clock-skew refusal) and Resync is set, it
// calls Resync (which should measure the clock offset again, so that
// Config.Now is corrected) and dials once more.
type ConfigDialer struct {
	// Config is the configuration of every connection.
	Config Config
	// Resync measures the service's clock again (e.g. any control-plane
	// call of control.Client). Nil: a skew refusal is returned as is.
	Resync func(ctx context.Context) error
}

// DialerFor returns a Dialer that dials with cfg (see ConfigDialer).
func DialerFor(cfg Config) Dialer { return &ConfigDialer{Config: cfg} }

// Dial opens one connection.
func (d *ConfigDialer) Dial(ctx context.Context) (Conn, error) {
	c, err := Dial(ctx, d.Config)
	if err != nil && d.Resync != nil && skewRefusal(err) && ctx.Err() == nil {
		if rerr := d.Resync(ctx); rerr != nil && d.Config.Logger != nil {
			d.Config.Logger.Warn("measuring the service's clock again failed", "err", rerr)
		}
		c, err = Dial(ctx, d.Config)
	}
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// skewRefusal reports whether the service refused the presigned URL for its
// signing time ("Signature expired", "Signature not yet current").
func skewRefusal(err error) bool {
	var he *HandshakeError
	if !errors.As(err, &he) || !errors.Is(err, ErrForbidden) {
		return false
	}
	m := strings.ToLower(he.Message)
	return strings.Contains(m, "signature expired") || strings.Contains(m, "signature not yet current")
}
