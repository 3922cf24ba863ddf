package hub

import (
	"bytes"
	"fmt"
	"log/slog"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// armedFault is a message or connect fault waiting to fire.
type armedFault struct {
	f    Fault
	left int
}

// normalizeFault checks f and fills its defaults.
func normalizeFault(f Fault) (Fault, error) {
	switch f.Kind {
	case FaultDrop, FaultDelay, FaultGoAway, FaultReconnectICE, FaultClose, FaultRefuseThrottle, FaultRefuseFull:
	default:
		return f, fmt.Errorf("%w: unknown kind %q; use drop, delay, goaway, reconnect-ice, close, throttle or full", ErrInvalidFault, f.Kind)
	}
	if f.Count < 0 {
		return f, fmt.Errorf("%w: count %d is negative; use 0 (once) or more", ErrInvalidFault, f.Count)
	}
	if f.Count == 0 {
		f.Count = 1
	}
	if f.Delay < 0 || f.Grace < 0 {
		return f, fmt.Errorf("%w: delay and grace must not be negative", ErrInvalidFault)
	}
	switch f.Kind {
	case FaultDrop, FaultDelay:
		if f.Action != "" {
			if _, err := kvsproto.ParseAction(string(f.Action)); err != nil {
				return f, fmt.Errorf("%w: %w", ErrInvalidFault, err)
			}
		}
		if f.Kind == FaultDelay && f.Delay == 0 {
			return f, fmt.Errorf("%w: a delay fault needs a positive delay", ErrInvalidFault)
		}
	case FaultGoAway:
		if f.Grace == 0 {
			f.Grace = defaultGoAwayGrace
		}
	}
	return f, nil
}

func matchChannel(sel string, ch *channel) bool {
	return sel == "" || sel == ch.arn || sel == ch.name
}

func matchTarget(target string, m *memberImpl) bool {
	switch target {
	case "":
		return true
	case "master":
		return m.role == kvsproto.RoleMaster
	case "viewer":
		return m.role == kvsproto.RoleViewer
	}
	return m.role == kvsproto.RoleViewer && m.clientID == target
}

func faultAttrs(f Fault) []slog.Attr {
	attrs := []slog.Attr{slog.String("fault", string(f.Kind))}
	if f.Channel != "" {
		attrs = append(attrs, slog.String("channel", f.Channel))
	}
	if f.Target != "" {
		attrs = append(attrs, slog.String("target", f.Target))
	}
	switch f.Kind {
	case FaultDrop, FaultDelay:
		attrs = append(attrs, slog.String("action", string(f.Action)), slog.Int("count", f.Count))
		if f.Kind == FaultDelay {
			attrs = append(attrs, slog.Duration("delay", f.Delay))
		}
	case FaultRefuseThrottle, FaultRefuseFull:
		attrs = append(attrs, slog.Int("count", f.Count))
	case FaultGoAway:
		attrs = append(attrs, slog.Duration("grace", f.Grace))
	}
	return attrs
}

func (h *hubImpl) inject(f Fault) (int, error) {
	if h.closed.Load() {
		return 0, ErrHubClosed
	}
	f, err := normalizeFault(f)
	if err != nil {
		return 0, err
	}
	switch f.Kind {
	case FaultDrop, FaultDelay, FaultRefuseThrottle, FaultRefuseFull:
		h.fmu.Lock()
		h.faults = append(h.faults, &armedFault{f: f, left: f.Count})
		h.armed.Store(int32(len(h.faults)))
		h.fmu.Unlock()
		h.logAttrs(slog.LevelWarn, "fault armed", faultAttrs(f)...)
		return 0, nil
	}
	return h.connFault(f), nil
}

// takeFault consumes one firing of the first armed fault that match
// accepts. The caller may hold a channel lock.
func (h *hubImpl) takeFault(match func(f *Fault) bool) *Fault {
	h.fmu.Lock()
	defer h.fmu.Unlock()
	for i, a := range h.faults {
		if !match(&a.f) {
			continue
		}
		a.left--
		if a.left <= 0 {
			h.faults = append(h.faults[:i], h.faults[i+1:]...)
			h.armed.Store(int32(len(h.faults)))
		}
		f := a.f
		return &f
	}
	return nil
}

// takeMessageFault returns the drop or delay fault that fires for a message
// m sends, if any. ch.mu is held.
func (h *hubImpl) takeMessageFault(ch *channel, m *memberImpl, action kvsproto.Action) *Fault {
	return h.takeFault(func(f *Fault) bool {
		return (f.Kind == FaultDrop || f.Kind == FaultDelay) &&
			(f.Action == "" || f.Action == action) && matchChannel(f.Channel, ch) && matchTarget(f.Target, m)
	})
}

// connectFault returns the error of a throttle or full fault that fires for
// the connect of m (not yet attached), or nil.
func (h *hubImpl) connectFault(m *memberImpl) error {
	probe := &channel{arn: m.arn, name: channelName(m.arn)}
	f := h.takeFault(func(f *Fault) bool {
		switch f.Kind {
		case FaultRefuseThrottle:
		case FaultRefuseFull:
			if m.role != kvsproto.RoleViewer {
				return false
			}
		default:
			return false
		}
		return matchChannel(f.Channel, probe) && matchTarget(f.Target, m)
	})
	if f == nil {
		return nil
	}
	err := ErrThrottled
	if f.Kind == FaultRefuseFull {
		err = ErrTooManyViewers
	}
	m.logAttrs(slog.LevelWarn, "fault fired: connection refused", slog.String("fault", string(f.Kind)),
		slog.String("reason", err.Error()), slog.String("remote", m.remote))
	return err
}

// connFault applies a goaway, reconnect-ice or close fault now and returns
// how many connections it affected.
func (h *hubImpl) connFault(f Fault) int {
	h.mu.RLock()
	var chans []*channel
	for _, ch := range h.channels {
		if matchChannel(f.Channel, ch) {
			chans = append(chans, ch)
		}
	}
	h.mu.RUnlock()
	n := 0
	for _, ch := range chans {
		ch.mu.Lock()
		if ch.removed {
			ch.mu.Unlock()
			continue
		}
		ms := ch.membersLocked(f.Target)
		for _, m := range ms {
			switch f.Kind {
			case FaultGoAway:
				_ = m.conn.Send(bytes.Clone(h.goAwayFrame)) // a failed Send closes the conn anyway
			case FaultReconnectICE:
				_ = m.conn.Send(bytes.Clone(h.reconnectFrame))
			case FaultClose:
				ch.detachLocked(m)
			}
		}
		idle := f.Kind == FaultClose && ch.idleLocked(h.now())
		ch.mu.Unlock()
		n += len(ms)
		for _, m := range ms {
			switch f.Kind {
			case FaultGoAway:
				m.logAttrs(slog.LevelWarn, "fault fired: GO_AWAY sent", slog.String("fault", string(f.Kind)),
					slog.Duration("grace", f.Grace), slog.String("remote", m.remote))
				h.after(f.Grace, m.goAwayClose)
			case FaultReconnectICE:
				m.logAttrs(slog.LevelWarn, "fault fired: RECONNECT_ICE_SERVER sent", slog.String("fault", string(f.Kind)),
					slog.String("remote", m.remote))
			case FaultClose:
				m.logAttrs(slog.LevelWarn, "fault fired: connection dropped abruptly", slog.String("fault", string(f.Kind)),
					slog.String("remote", m.remote))
				m.conn.Close(CloseCodeAbrupt, "", true)
			}
		}
		if idle {
			h.maybeRemove(ch)
		}
	}
	if n == 0 {
		h.logAttrs(slog.LevelWarn, "fault matched no connection", faultAttrs(f)...)
	} else {
		h.logAttrs(slog.LevelWarn, "fault applied", append(faultAttrs(f), slog.Int("connections", n))...)
	}
	return n
}

// goAwayClose closes m when the grace period after its GO_AWAY is over,
// unless it has gone already.
func (m *memberImpl) goAwayClose() {
	ch := m.ch
	ch.mu.Lock()
	was := ch.detachLocked(m)
	idle := was && !ch.removed && ch.idleLocked(m.h.now())
	ch.mu.Unlock()
	if !was {
		return
	}
	m.logAttrs(slog.LevelWarn, "fault fired: connection closed after GO_AWAY", slog.String("fault", string(FaultGoAway)),
		slog.String("remote", m.remote))
	m.conn.Close(CloseCodeGoAway, CloseReasonGoAway, false)
	if idle {
		m.h.maybeRemove(ch)
	}
}
