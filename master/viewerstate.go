package master

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// This file follows a viewer's peer through its life: its connection
// state changes, the timeouts the sweep enforces, and its removal.

// onPeer handles what a peer forwarded (pump, data channels, track readers).
func (r *run) onPeer(ctx context.Context, pe peerEvent) {
	if r.onStoragePeer(ctx, pe) {
		return
	}
	p := pe.p
	if r.peers.get(p.id) != p {
		return // a replaced or removed peer
	}
	if pe.tw != nil {
		p.noteTalk(pe.tw.kind)
		r.onTwoWayNote(p, pe.tw)
		return
	}
	if pe.cand != nil {
		r.send(ctx, outMsg{action: kvsproto.ActionICECandidate, cand: toKVS(*pe.cand), to: p.id})
		return
	}
	switch s := p.conn.PC.ConnectionState(); s {
	case webrtc.PeerConnectionStateConnected:
		p.disconnectedAt = time.Time{}
		p.checkRestart()
		if !p.joined {
			p.joined = true
			r.setState(p, ViewerConnected, true)
			r.subscribe(p)
			r.log.Info("viewer joined", "viewer", p.id, "viewers", r.peers.count(), "audio", p.audio != nil,
				"setup", time.Since(p.since).Round(time.Millisecond))
			r.emit(Event{Kind: EventViewerJoined, ClientID: p.id})
		} else if p.state != ViewerConnected {
			r.setState(p, ViewerConnected, false)
			r.log.Info("viewer reconnected", "viewer", p.id)
		}
	case webrtc.PeerConnectionStateDisconnected:
		if p.disconnectedAt.IsZero() {
			p.disconnectedAt = time.Now()
			r.setState(p, ViewerDisconnected, false)
			r.log.Info("viewer disconnected; waiting for it to recover", "viewer", p.id, "timeout", r.cfg.DisconnectedTimeout)
		}
	case webrtc.PeerConnectionStateFailed:
		if !p.joined {
			r.removePeer(p, ErrPeerFailed)
			return
		}
		// A joined viewer may restart ICE (its network changed): keep the
		// peer for DisconnectedTimeout before giving up on it.
		if p.disconnectedAt.IsZero() {
			p.disconnectedAt = time.Now()
			r.setState(p, ViewerDisconnected, false)
			r.log.Info("viewer connection failed; waiting for an ICE restart", "viewer", p.id, "timeout", r.cfg.DisconnectedTimeout)
		}
	case webrtc.PeerConnectionStateClosed:
		r.removePeer(p, ErrPeerClosed)
	}
}

func (r *run) setState(p *peer, s ViewerState, connected bool) {
	r.peers.mu.Lock()
	p.state = s
	if connected {
		p.connectedAt = time.Now()
	}
	r.peers.mu.Unlock()
}

// removePeer forgets a peer, closes it and reports why.
func (r *run) removePeer(p *peer, why error) {
	r.peers.remove(p)
	r.closePeer(p)
	if p.talking {
		p.talking = false
		r.onTwoWayNote(p, &twoWayNote{kind: EventTalkStopped})
	}
	if p.joined {
		lvl := slog.LevelInfo
		if errors.Is(why, ErrPeerFailed) || errors.Is(why, ErrDisconnected) {
			lvl = slog.LevelWarn
		}
		r.log.Log(context.Background(), lvl, "viewer left", "viewer", p.id, "reason", why, "viewers", r.peers.count(),
			"bytes_sent", p.bytes.Load(), "connected_for", time.Since(p.connectedAt).Round(time.Millisecond))
		r.emit(Event{Kind: EventViewerLeft, ClientID: p.id, Err: why})
		return
	}
	lvl := slog.LevelWarn
	if errors.Is(why, ErrShutdown) || errors.Is(why, ErrReplaced) {
		lvl = slog.LevelInfo
	}
	r.log.Log(context.Background(), lvl, "viewer did not connect", "viewer", p.id, "reason", why)
	r.emit(Event{Kind: EventViewerFailed, ClientID: p.id, Err: why})
}

// sweep enforces the timeouts of peers, early candidates and draining
// signaling connections.
func (r *run) sweep(ctx context.Context, now time.Time) {
	r.sweepStorage(ctx, now)
	for _, p := range r.peers.m {
		p.checkRestart() // a completed restart may bring no state change
		down := p.downSince(now, r.restartGrace())
		switch {
		case !p.joined && now.After(p.deadline):
			r.removePeer(p, ErrConnectTimeout)
		case !down.IsZero() && now.Sub(down) > r.cfg.DisconnectedTimeout:
			if p.disconnectedAt.IsZero() {
				r.log.Info("the viewer's ICE restart did not connect; dropping it", "viewer", p.id,
					"restarted", now.Sub(p.restartedAt).Round(time.Millisecond))
			}
			r.removePeer(p, ErrDisconnected)
		}
	}
	for id, q := range r.early {
		if now.Sub(q.first) > earlyCandTTL {
			r.log.Debug("dropping ICE candidates from a viewer that sent no offer", "viewer", id, "candidates", len(q.cands))
			delete(r.early, id)
		}
	}
}

// restartGrace is how long a viewer's ICE restart may go without
// connecting before its peer counts as down.
func (r *run) restartGrace() time.Duration {
	return min(maxRestartGrace, r.cfg.DisconnectedTimeout)
}

// silence returns how long nothing has arrived on a peer connection's
// candidate pairs (0 if it cannot tell).
func silence(pc *webrtc.PeerConnection) time.Duration {
	var last time.Time
	for _, st := range pc.GetStats() {
		if cp, ok := st.(webrtc.ICECandidatePairStats); ok && cp.Nominated {
			if t := cp.LastPacketReceivedTimestamp.Time(); t.After(last) {
				last = t
			}
		}
	}
	if last.IsZero() {
		return 0
	}
	return time.Since(last)
}
