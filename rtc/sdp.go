package rtc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// ErrNoCommonCodec is wrapped by [AnswerCodec] when the remote description
// offers no codec kvsrtc can send on a media section.
var ErrNoCommonCodec = errors.New("rtc: no common codec")

// TrickleOption is the SDP attribute value ("a=ice-options:trickle") that
// tells the remote peer this side sends and accepts trickled ICE candidates
// (RFC 8840). pion does not write it; the KVS WebRTC C SDK decides from this
// attribute alone whether its peer trickles, and answers an offer without it
// only once its own candidate gathering has ended (10 s by default).
const TrickleOption = "trickle"

// WithTrickle returns sdpText with a session-level "a=ice-options:trickle"
// added, unless an ice-options attribute that lists trickle is already there
// (at session or media level). Every offer and answer kvsrtc sends goes
// through it. An SDP that does not parse is returned unchanged with the
// parse error.
func WithTrickle(sdpText string) (string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(sdpText); err != nil {
		return sdpText, fmt.Errorf("rtc: parse SDP: %w", err)
	}
	if HasTrickle(&d) {
		return sdpText, nil
	}
	d.Attributes = append(d.Attributes, sdp.NewAttribute("ice-options", TrickleOption))
	out, err := d.Marshal()
	if err != nil {
		return sdpText, fmt.Errorf("rtc: write SDP: %w", err)
	}
	return string(out), nil
}

// HasTrickle reports whether d announces trickle ICE (an ice-options
// attribute listing "trickle", at session or media level).
func HasTrickle(d *sdp.SessionDescription) bool {
	has := func(attrs []sdp.Attribute) bool {
		for _, a := range attrs {
			if a.Key == "ice-options" && hasToken(a.Value, TrickleOption) {
				return true
			}
		}
		return false
	}
	if has(d.Attributes) {
		return true
	}
	for _, m := range d.MediaDescriptions {
		if has(m.Attributes) {
			return true
		}
	}
	return false
}

func hasToken(list, tok string) bool {
	for f := range strings.FieldsSeq(list) {
		if strings.EqualFold(f, tok) {
			return true
		}
	}
	return false
}

// Summary is what an SDP says that matters when two stacks disagree: the
// codecs per media section, whether the sender trickles, and the ICE
// candidates it carries inline.
type Summary struct {
	Trickle bool
	// Candidates counts a=candidate lines (non-trickle peers put all of
	// their candidates in the SDP).
	Candidates int
	// CandidateTypes counts those lines by type ("host", "srflx",
	// "prflx", "relay"; "unknown" for a line without one).
	CandidateTypes map[string]int
	// Media lists the media sections in order.
	Media []MediaSummary
}

// MediaSummary describes one media section of an SDP.
type MediaSummary struct {
	Kind      string // "video", "audio", "application"
	Mid       string
	Port      int // 0: the section is rejected
	Direction string
	Codecs    []webrtc.RTPCodecParameters // in the order listed
}

// Summarize parses an SDP with pion/sdp.
func Summarize(sdpText string) (Summary, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(sdpText); err != nil {
		return Summary{}, fmt.Errorf("rtc: parse SDP: %w", err)
	}
	s := Summary{Trickle: HasTrickle(&d), CandidateTypes: map[string]int{}}
	for _, m := range d.MediaDescriptions {
		ms := MediaSummary{Kind: m.MediaName.Media, Port: m.MediaName.Port.Value, Direction: "sendrecv"}
		for _, a := range m.Attributes {
			switch a.Key {
			case "mid":
				ms.Mid = a.Value
			case "candidate":
				s.Candidates++
				s.CandidateTypes[CandidateType(a.Value)]++
			case "sendrecv", "sendonly", "recvonly", "inactive":
				ms.Direction = a.Key
			}
		}
		for _, f := range m.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 8)
			if err != nil {
				continue
			}
			c, err := d.GetCodecForPayloadType(uint8(pt))
			if err != nil || c.Name == "" {
				continue
			}
			mime := ms.Kind + "/" + c.Name
			p := webrtc.RTPCodecParameters{
				PayloadType: webrtc.PayloadType(pt),
				RTPCodecCapability: webrtc.RTPCodecCapability{
					MimeType: mime, ClockRate: c.ClockRate, SDPFmtpLine: c.Fmtp,
				},
			}
			if ch, err := strconv.ParseUint(c.EncodingParameters, 10, 16); err == nil {
				p.Channels = uint16(ch)
			}
			ms.Codecs = append(ms.Codecs, p)
		}
		s.Media = append(s.Media, ms)
	}
	return s, nil
}

// Section returns the first media section of kind ("video", "audio",
// "application").
func (s Summary) Section(kind string) (MediaSummary, bool) {
	for _, m := range s.Media {
		if m.Kind == kind {
			return m, true
		}
	}
	return MediaSummary{}, false
}

// CandidateType returns the type of an ICE candidate ("host", "srflx",
// "prflx", "relay"), given as its SDP attribute value with or without the
// "candidate:" prefix; "unknown" when it names none.
func CandidateType(candidate string) string {
	f := strings.Fields(candidate)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "typ" {
			return f[i+1]
		}
	}
	return "unknown"
}

// AnswerCodec picks, from the codecs the remote offer lists for the media
// section mid, the one a local track of capability want will be sent with:
// the same codec (mime type and clock rate) and, for H.264, packetization
// mode 1 (kvsrtc fragments NAL units, FU-A) and preferably the same
// profile. The result carries the remote's payload type, so an answer that
// lists only it tells the viewer exactly which payload type the media
// arrives on (go2rtc reads only the first listed one).
func AnswerCodec(offer Summary, mid string, want webrtc.RTPCodecCapability) (webrtc.RTPCodecParameters, error) {
	for _, m := range offer.Media {
		if m.Mid != mid {
			continue
		}
		best, bestScore := webrtc.RTPCodecParameters{}, 0
		for _, c := range m.Codecs {
			if !strings.EqualFold(c.MimeType, want.MimeType) || c.ClockRate != want.ClockRate {
				continue
			}
			score := 1
			if strings.EqualFold(want.MimeType, webrtc.MimeTypeH264) {
				if fmtpValue(c.SDPFmtpLine, "packetization-mode") != "1" {
					continue
				}
				if p := fmtpValue(c.SDPFmtpLine, "profile-level-id"); len(p) >= 4 && strings.EqualFold(p[:4], fmtpValue(want.SDPFmtpLine, "profile-level-id")[:4]) {
					score = 2
				}
			}
			if score > bestScore {
				best, bestScore = c, score
			}
		}
		if bestScore == 0 {
			return webrtc.RTPCodecParameters{}, fmt.Errorf("%w: the offer's %s section (mid %s) lists no %s this side can send", ErrNoCommonCodec, m.Kind, mid, codecName(want))
		}
		best.Channels = want.Channels
		return best, nil
	}
	return webrtc.RTPCodecParameters{}, fmt.Errorf("%w: the offer has no media section with mid %q", ErrNoCommonCodec, mid)
}

func codecName(c webrtc.RTPCodecCapability) string {
	name := c.MimeType
	if i := strings.IndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if strings.EqualFold(c.MimeType, webrtc.MimeTypeH264) {
		return name + " (packetization-mode=1)"
	}
	return name
}

// fmtpValue returns the value of key in an fmtp line ("" if absent; for
// H.264's profile-level-id "000000" so that slicing is safe).
func fmtpValue(line, key string) string {
	for part := range strings.SplitSeq(line, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	if key == "profile-level-id" {
		return "000000"
	}
	return ""
}

// PreferAnswerCodec restricts the transceiver that sends with sender to the
// one codec of the remote offer that the sender's track uses (see
// [AnswerCodec]), so that the answer lists exactly that codec and payload
// type. Call it after SetRemoteDescription(offer) and AddTrack, before
// CreateAnswer.
func PreferAnswerCodec(pc *webrtc.PeerConnection, sender *webrtc.RTPSender, want webrtc.RTPCodecCapability) error {
	rd := pc.RemoteDescription()
	if rd == nil {
		return errors.New("rtc: PreferAnswerCodec needs the remote offer applied first")
	}
	sum, err := Summarize(rd.SDP)
	if err != nil {
		return err
	}
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() != sender {
			continue
		}
		c, err := AnswerCodec(sum, tr.Mid(), want)
		if err != nil {
			return err
		}
		// Our own RTCP feedback for it (the answer intersects with the
		// offer's).
		c.RTCPFeedback = videoFeedbackFor(c.MimeType)
		if err := tr.SetCodecPreferences([]webrtc.RTPCodecParameters{c}); err != nil {
			return fmt.Errorf("rtc: restrict the %s answer to %s/%d: %w", tr.Kind(), c.MimeType, c.PayloadType, err)
		}
		return nil
	}
	return errors.New("rtc: the sender has no transceiver")
}

func videoFeedbackFor(mime string) []webrtc.RTCPFeedback {
	if strings.HasPrefix(strings.ToLower(mime), "video/") {
		return videoFeedback()
	}
	return nil
}
