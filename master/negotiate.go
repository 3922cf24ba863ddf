package master

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// offerSummary is what the master needs to know about an offer before it
// builds a peer for it.
type offerSummary struct {
	// videoOK: a video section the viewer receives on lists the codec.
	videoOK bool
	// video lists the video codecs of the receivable video sections.
	video []string
	// audio: a receivable audio section lists Opus.
	audio bool
	// hasVideo: the offer has a receivable video section at all.
	hasVideo bool
	// h264Mode0Only: H.264 is offered, but only in packetization-mode 0.
	h264Mode0Only bool
	// ufrag is the offer's ICE username fragment ("" if none).
	ufrag string
	// fingerprint is the offer's DTLS certificate fingerprint ("" if
	// none): the same one in a later offer from the same viewer means the
	// same peer connection (an ICE restart), not a new one.
	fingerprint string
}

// receivable reports whether the viewer can receive on a media section:
// not rejected (port 0) and not sendonly/inactive from the viewer's side.
func receivable(md *sdp.MediaDescription) bool {
	if md.MediaName.Port.Value == 0 {
		return false
	}
	for _, a := range md.Attributes {
		switch a.Key {
		case "sendonly", "inactive":
			return false
		}
	}
	return true
}

// codecsOf returns the payload types of a media section by encoding name
// (upper case) and their fmtp lines.
func codecsOf(md *sdp.MediaDescription) (names map[string][]int, fmtp map[int]string) {
	names = make(map[string][]int)
	fmtp = make(map[int]string)
	for _, a := range md.Attributes {
		switch a.Key {
		case "rtpmap":
			pt, rest, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			n, err := strconv.Atoi(pt)
			if err != nil {
				continue
			}
			name, _, _ := strings.Cut(rest, "/")
			names[strings.ToUpper(strings.TrimSpace(name))] = append(names[strings.ToUpper(strings.TrimSpace(name))], n)
		case "fmtp":
			pt, rest, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			if n, err := strconv.Atoi(pt); err == nil {
				fmtp[n] = rest
			}
		}
	}
	return names, fmtp
}

// packetizationMode returns the packetization-mode of an H.264 fmtp line
// (RFC 6184: absent means 0).
func packetizationMode(fmtp string) string {
	for p := range strings.SplitSeq(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "packetization-mode") {
			return strings.TrimSpace(v)
		}
	}
	return "0"
}

// summarizeOffer parses an SDP offer and checks it against the codec the
// master sends. The names in rtpmap lines are compared case-insensitively;
// H.264 also needs packetization-mode 1 (what the master packetizes).
func summarizeOffer(raw string, codec rtc.Codec) (offerSummary, error) {
	var s offerSummary
	var d sdp.SessionDescription
	if err := d.UnmarshalString(raw); err != nil {
		return s, err
	}
	want := strings.ToUpper(codec.String())
	if v, ok := d.Attribute("ice-ufrag"); ok {
		s.ufrag = v
	}
	if v, ok := d.Attribute("fingerprint"); ok {
		s.fingerprint = strings.ToLower(strings.TrimSpace(v))
	}
	for _, md := range d.MediaDescriptions {
		if v, ok := md.Attribute("ice-ufrag"); ok && s.ufrag == "" {
			s.ufrag = v
		}
		if v, ok := md.Attribute("fingerprint"); ok && s.fingerprint == "" {
			s.fingerprint = strings.ToLower(strings.TrimSpace(v))
		}
		if !receivable(md) {
			continue
		}
		names, fmtp := codecsOf(md)
		switch md.MediaName.Media {
		case "video":
			s.hasVideo = true
			for n := range names {
				if n == "RTX" || n == "RED" || n == "ULPFEC" || n == "FLEXFEC-03" {
					continue
				}
				if !slices.Contains(s.video, n) {
					s.video = append(s.video, n)
				}
			}
			pts := names[want]
			if codec == rtc.CodecH264 && len(pts) > 0 {
				mode1 := slices.ContainsFunc(pts, func(pt int) bool { return packetizationMode(fmtp[pt]) == "1" })
				if !mode1 {
					s.h264Mode0Only = true
					continue
				}
			}
			if len(pts) > 0 {
				s.videoOK = true
			}
		case "audio":
			if len(names["OPUS"]) > 0 {
				s.audio = true
			}
		}
	}
	slices.Sort(s.video)
	return s, nil
}

// negotiationError builds the error for an offer summarizeOffer did not
// accept; nil if it is fine.
func (s offerSummary) negotiationError(clientID string, codec rtc.Codec) *NegotiationError {
	if s.videoOK {
		return nil
	}
	e := &NegotiationError{ClientID: clientID, Want: codec.String(), Offered: s.video}
	switch {
	case !s.hasVideo:
		e.Err = ErrBadOffer
		e.Detail = "the offer has no video section to receive on (offer to receive video: a recvonly or sendrecv video transceiver)"
	case s.h264Mode0Only:
		e.Err = ErrCodecMismatch
		e.Detail = "the viewer offers H.264 only in packetization-mode 0; the master sends packetization-mode 1"
	default:
		e.Err = ErrCodecMismatch
		other := rtc.CodecVP8
		if codec == rtc.CodecVP8 {
			other = rtc.CodecH264
		}
		offered := "no video codec"
		if len(s.video) > 0 {
			offered = strings.Join(s.video, ", ")
		}
		e.Detail = fmt.Sprintf("the viewer offers %s but the source is %s; stream a %s source or use a viewer that accepts %s",
			offered, codec, other, codec)
	}
	return e
}
