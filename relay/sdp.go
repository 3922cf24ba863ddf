package relay

import (
	"context"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// offerInfo is what Join needs to know of an offer.
type offerInfo struct {
	sdp   string
	audio bool // has an audio section the relay can send on
}

// receives reports whether a section accepts media from the relay.
func receives(m rtc.MediaSummary) bool {
	switch m.Direction {
	case "", "recvonly", "sendrecv":
		return m.Port != 0
	}
	return false
}

// parseOffer checks that an offer is SDP with a video section the relay
// can send on.
func parseOffer(offer string) (offerInfo, error) {
	if strings.TrimSpace(offer) == "" {
		return offerInfo{}, fmt.Errorf("%w: the offer is empty: send an SDP offer (Content-Type application/sdp)", ErrBadOffer)
	}
	sum, err := rtc.Summarize(offer)
	if err != nil {
		return offerInfo{}, fmt.Errorf("%w: not an SDP offer: %w", ErrBadOffer, err)
	}
	info := offerInfo{sdp: offer}
	video := false
	for _, m := range sum.Media {
		switch {
		case m.Kind == "video" && receives(m):
			video = true
		case m.Kind == "audio" && receives(m):
			info.audio = true
		}
	}
	if !video {
		return offerInfo{}, fmt.Errorf("%w: the offer has no video section to receive on: add one with direction recvonly "+
			"(in a browser: pc.addTransceiver('video', {direction: 'recvonly'}))", ErrBadOffer)
	}
	return info, nil
}

// Patch applies a trickle ICE or ICE restart fragment from the peer
// (RFC 9725 section 4.3, RFC 8840). Candidates are added to the peer
// connection and it returns "". A fragment with new ICE credentials
// restarts ICE on this peer's connection only (the upstream is not
// touched) and returns the relay's fragment: its new credentials and
// candidates. Errors wrap ErrBadFragment or ErrClosed.
func (p *Peer) Patch(ctx context.Context, frag string) (string, error) {
	f, err := rtc.ParseICEFragment(frag)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadFragment, err)
	}
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	select {
	case <-p.done:
		return "", ErrClosed
	default:
	}
	p.mu.Lock()
	remote := p.remote
	p.mu.Unlock()
	cur := rtc.SDPAttribute(remote, "ice-ufrag")
	reply := ""
	switch {
	case f.Ufrag != "" && f.Ufrag != cur && f.Pwd != "":
		offer := rtc.WithICECredentials(remote, f.Ufrag, f.Pwd)
		if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			return "", fmt.Errorf("%w: restarting ICE: %w", ErrBadFragment, err)
		}
		local, err := p.localDescription(ctx, nil)
		if err != nil {
			return "", err
		}
		p.mu.Lock()
		p.remote, p.answer = offer, local
		p.restarts++
		p.mu.Unlock()
		p.r.log.Debug("relay: peer restarted ICE", "peer", p.id)
		reply = rtc.LocalICEFragment(local)
	case f.Ufrag != "" && f.Ufrag != cur:
		return "", fmt.Errorf("%w: ice-ufrag %q is not this session's (%q), and without a=ice-pwd it is no ICE restart", ErrOtherSession, f.Ufrag, cur)
	}
	for _, c := range f.Candidates {
		if err := p.pc.AddICECandidate(c); err != nil {
			return reply, fmt.Errorf("%w: candidate %q: %w", ErrBadFragment, c.Candidate, err)
		}
	}
	return reply, nil
}
