package rtc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/webrtc/v4"
)

// ErrBadFragment: a trickle ICE / ICE restart SDP fragment is malformed.
var ErrBadFragment = errors.New("rtc: bad SDP fragment")

// ICEFragment is a trickle ICE or ICE restart SDP fragment
// (application/trickle-ice-sdpfrag, RFC 8840), as WHEP and WHIP PATCH
// requests carry them.
type ICEFragment struct {
	// Ufrag and Pwd are the ICE credentials, empty if absent. New ones
	// restart ICE.
	Ufrag, Pwd string
	// Candidates are the a=candidate lines, with the a=mid before them.
	Candidates []webrtc.ICECandidateInit
	// EndOfCandidates: the fragment has a=end-of-candidates.
	EndOfCandidates bool
}

// ParseICEFragment parses a fragment. Errors wrap [ErrBadFragment].
func ParseICEFragment(body string) (ICEFragment, error) {
	var f ICEFragment
	mid := ""
	known := 0
	for line := range strings.Lines(body) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.Ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
			known++
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.Pwd = strings.TrimPrefix(line, "a=ice-pwd:")
			known++
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			c := webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a=")}
			if mid != "" {
				m := mid
				c.SDPMid = &m
			}
			f.Candidates = append(f.Candidates, c)
			known++
		case line == "a=end-of-candidates":
			f.EndOfCandidates = true
			known++
		case strings.HasPrefix(line, "m="), strings.HasPrefix(line, "a="):
			// media lines and other attributes (a=ice-options, a=group) may be there
		default:
			return f, fmt.Errorf("%w: line %q is not an SDP attribute or media line", ErrBadFragment, line)
		}
	}
	if known == 0 {
		return f, fmt.Errorf("%w: it has no a=ice-ufrag, a=ice-pwd or a=candidate line (send an "+
			"application/trickle-ice-sdpfrag body, RFC 8840)", ErrBadFragment)
	}
	if f.Ufrag == "" && f.Pwd != "" {
		return f, fmt.Errorf("%w: a=ice-pwd without a=ice-ufrag", ErrBadFragment)
	}
	return f, nil
}

// SDPAttribute returns the value of the first a=<name>: line of an SDP
// ("" if there is none).
func SDPAttribute(sdp, name string) string {
	for line := range strings.Lines(sdp) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "a="+name+":"); ok {
			return v
		}
	}
	return ""
}

// WithICECredentials returns sdp with every a=ice-ufrag and a=ice-pwd
// replaced and its candidates removed: the remote description after an
// ICE restart signalled by a fragment.
func WithICECredentials(sdp, ufrag, pwd string) string {
	var b strings.Builder
	for line := range strings.Lines(sdp) {
		l := strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			b.WriteString("a=ice-ufrag:" + ufrag + "\r\n")
		case strings.HasPrefix(l, "a=ice-pwd:"):
			b.WriteString("a=ice-pwd:" + pwd + "\r\n")
		case strings.HasPrefix(l, "a=candidate:"), l == "a=end-of-candidates":
		default:
			b.WriteString(l + "\r\n")
		}
	}
	return b.String()
}

// LocalICEFragment returns the fragment for a local description: its ICE
// credentials, then its first (bundled) media section's m= and a=mid
// lines, candidates and a=end-of-candidates.
func LocalICEFragment(sdp string) string {
	var b strings.Builder
	b.WriteString("a=ice-ufrag:" + SDPAttribute(sdp, "ice-ufrag") + "\r\n")
	b.WriteString("a=ice-pwd:" + SDPAttribute(sdp, "ice-pwd") + "\r\n")
	section := 0
	for line := range strings.Lines(sdp) {
		l := strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(l, "m=") {
			section++
			if section == 1 {
				b.WriteString(l + "\r\n")
			}
			continue
		}
		if section == 1 && (strings.HasPrefix(l, "a=mid:") || strings.HasPrefix(l, "a=candidate:")) {
			b.WriteString(l + "\r\n")
		}
	}
	b.WriteString("a=end-of-candidates\r\n")
	return b.String()
}
