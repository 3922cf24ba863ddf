package rtc

import (
	"fmt"

	"github.com/pion/sdp/v3"
)

// DataChannelLabel is the label of the data channel the official KVS
// samples open ("kvsDataChannel" in the JS SDK's and the C SDK's samples);
// kvsrtc uses it too.
const DataChannelLabel = "kvsDataChannel"

// MaxMessageSize is the largest data channel message kvsrtc sends or
// accepts: 64 KiB, the default a=max-message-size of RFC 8841 and what
// every KVS stack (pion, libwebrtc, the C SDK's usrsctp) takes in one
// message.
const MaxMessageSize = 65536

// WithoutReceiving returns sdpText with the media sections of kind
// ("audio" or "video") that would receive changed so that they do not:
// sendrecv becomes sendonly, recvonly becomes inactive. A master uses it on
// the answer it sends to decline a viewer's talk-back while still sending
// its own audio (pion sets a transceiver to sendrecv whenever the offer is
// sendrecv and a track is added). An SDP that does not parse is returned
// unchanged with the parse error.
func WithoutReceiving(sdpText, kind string) (string, error) {
	return editMedia(sdpText, kind, func(m *sdp.MediaDescription) bool {
		dir := "sendrecv"
		idx := -1
		for i, a := range m.Attributes {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				dir, idx = a.Key, i
			}
		}
		var to string
		switch dir {
		case "sendrecv":
			to = "sendonly"
		case "recvonly":
			to = "inactive"
		default:
			return false
		}
		if idx >= 0 {
			m.Attributes[idx] = sdp.NewPropertyAttribute(to)
		} else {
			m.Attributes = append(m.Attributes, sdp.NewPropertyAttribute(to))
		}
		return true
	})
}

// Rejecting returns sdpText with every media section of kind ("audio",
// "video", "application") rejected (port 0, RFC 3264 section 6). A master
// uses it to decline a viewer's data channel in its answer, so that the
// viewer knows before anything is sent. An SDP that does not parse is
// returned unchanged with the parse error.
func Rejecting(sdpText, kind string) (string, error) {
	return editMedia(sdpText, kind, func(m *sdp.MediaDescription) bool {
		m.MediaName.Port = sdp.RangedPort{Value: 0}
		return true
	})
}

// editMedia applies edit to every accepted (port not 0) media section of
// kind and returns the SDP written again when edit changed one (reported
// by its result), else sdpText itself. An SDP that does not parse is
// returned unchanged with the parse error.
func editMedia(sdpText, kind string, edit func(*sdp.MediaDescription) bool) (string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(sdpText); err != nil {
		return sdpText, fmt.Errorf("rtc: parse SDP: %w", err)
	}
	changed := false
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media == kind && m.MediaName.Port.Value != 0 && edit(m) {
			changed = true
		}
	}
	if !changed {
		return sdpText, nil
	}
	out, err := d.Marshal()
	if err != nil {
		return sdpText, fmt.Errorf("rtc: write SDP: %w", err)
	}
	return string(out), nil
}
