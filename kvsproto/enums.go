package kvsproto

import "fmt"

// Action is the type of a message a client sends over the signaling WebSocket.
type Action string

// Client actions.
const (
	ActionSDPOffer     Action = "SDP_OFFER"
	ActionSDPAnswer    Action = "SDP_ANSWER"
	ActionICECandidate Action = "ICE_CANDIDATE"
)

// String returns the wire form.
func (a Action) String() string { return string(a) }

// ParseAction parses a wire action. Matching is exact, as the service does.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionSDPOffer, ActionSDPAnswer, ActionICECandidate:
		return a, nil
	}
	return "", invalid("action", s, "must be SDP_OFFER, SDP_ANSWER or ICE_CANDIDATE")
}

// MessageType is the type of an event the service sends to a client.
type MessageType string

// Service event types.
const (
	MessageSDPOffer           MessageType = "SDP_OFFER"
	MessageSDPAnswer          MessageType = "SDP_ANSWER"
	MessageICECandidate       MessageType = "ICE_CANDIDATE"
	MessageGoAway             MessageType = "GO_AWAY"
	MessageReconnectICEServer MessageType = "RECONNECT_ICE_SERVER"
	MessageStatusResponse     MessageType = "STATUS_RESPONSE"
)

// String returns the wire form.
func (m MessageType) String() string { return string(m) }

// Known reports whether m is one of the documented event types.
func (m MessageType) Known() bool {
	switch m {
	case MessageSDPOffer, MessageSDPAnswer, MessageICECandidate, MessageGoAway, MessageReconnectICEServer, MessageStatusResponse:
		return true
	}
	return false
}

// Role is the side of a signaling channel a client connects as.
type Role string

// Channel roles.
const (
	RoleMaster Role = "MASTER"
	RoleViewer Role = "VIEWER"
)

// String returns the wire form.
func (r Role) String() string { return string(r) }

// ParseRole parses MASTER or VIEWER.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleMaster, RoleViewer:
		return r, nil
	}
	return "", invalid("Role", s, "must be MASTER or VIEWER")
}

// Protocol is an endpoint protocol of GetSignalingChannelEndpoint.
type Protocol string

// Endpoint protocols.
const (
	ProtocolWSS    Protocol = "WSS"
	ProtocolHTTPS  Protocol = "HTTPS"
	ProtocolWebRTC Protocol = "WEBRTC"
)

// String returns the wire form.
func (p Protocol) String() string { return string(p) }

// ParseProtocol parses WSS, HTTPS or WEBRTC.
func ParseProtocol(s string) (Protocol, error) {
	switch p := Protocol(s); p {
	case ProtocolWSS, ProtocolHTTPS, ProtocolWebRTC:
		return p, nil
	}
	return "", invalid("Protocol", s, "must be WSS, HTTPS or WEBRTC")
}

// ChannelStatus is the lifecycle state of a signaling channel.
type ChannelStatus string

// Channel statuses.
const (
	StatusCreating ChannelStatus = "CREATING"
	StatusActive   ChannelStatus = "ACTIVE"
	StatusUpdating ChannelStatus = "UPDATING"
	StatusDeleting ChannelStatus = "DELETING"
)

// String returns the wire form.
func (s ChannelStatus) String() string { return string(s) }

// ChannelType is the type of a signaling channel.
type ChannelType string

// Channel types. Only SINGLE_MASTER can be created.
const (
	ChannelTypeSingleMaster ChannelType = "SINGLE_MASTER"
	ChannelTypeFullMesh     ChannelType = "FULL_MESH"
)

// String returns the wire form.
func (t ChannelType) String() string { return string(t) }

// ParseChannelType parses SINGLE_MASTER or FULL_MESH.
func ParseChannelType(s string) (ChannelType, error) {
	switch t := ChannelType(s); t {
	case ChannelTypeSingleMaster, ChannelTypeFullMesh:
		return t, nil
	}
	return "", invalid("ChannelType", s, fmt.Sprintf("must be %s", ChannelTypeSingleMaster))
}
