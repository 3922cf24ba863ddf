package viewer

import (
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
)

// What an offer and an answer must contain, read with pion/sdp.

// parseSDP parses an SDP.
func parseSDP(text string) (*sdp.SessionDescription, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(text); err != nil {
		return nil, err
	}
	return &d, nil
}

// checkOffer makes sure an offer asks for video: a video section the
// viewer receives on, with at least one codec.
func checkOffer(text string) error {
	d, err := parseSDP(text)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadOffer, err)
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media == "video" && m.MediaName.Port.Value != 0 && len(m.MediaName.Formats) > 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: the offer has no video section with a codec", errBadOffer)
}

// checkAnswer rejects an answer in which the master declined the video
// (its first video section).
func checkAnswer(text string) error {
	d, err := parseSDP(text)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadAnswer, err)
	}
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "video" {
			continue
		}
		if m.MediaName.Port.Value == 0 {
			return fmt.Errorf("%w: the master declined the video (no common codec; it may not support the offered codecs)", errBadAnswer)
		}
		return nil
	}
	return fmt.Errorf("%w: the answer has no video section", errBadAnswer)
}

// fingerprint returns the DTLS fingerprint of an SDP, lower case: the
// session-level one, else the first media section's ("" if none or if
// the SDP does not parse).
func fingerprint(text string) string {
	d, err := parseSDP(text)
	if err != nil {
		return ""
	}
	v, ok := d.Attribute("fingerprint")
	for i := 0; !ok && i < len(d.MediaDescriptions); i++ {
		v, ok = d.MediaDescriptions[i].Attribute("fingerprint")
	}
	return strings.ToLower(strings.TrimSpace(v))
}
