package emulator

import (
	"errors"
	"fmt"

	"github.com/kvsrtc/kvsrtc/emulator/internal/hub"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// StorageMedia runs the media side of the channels' storage sessions
// (WebRTC ingestion and Multiviewer): the session's own peer connections.
// The emulator validates and records the joins (JoinStorageSession,
// JoinStorageSessionAsViewer) and routes the signaling; an implementation
// (package storage, which kvsrtc local and kvstest plug in) offers to each
// participant, takes the camera's media once, forwards it to the viewers
// and records it with [StorageParticipant.Record].
//
// The emulator calls the methods from request goroutines; they must not
// block (start the work on goroutines of their own).
type StorageMedia interface {
	// Join is called after each successful join: the storage session
	// sends p an SDP offer (p.Send) and replaces an earlier link of the
	// same participant.
	Join(p StorageParticipant)
	// Signal delivers a message a participant sent to the storage
	// session: an SDP_ANSWER or ICE_CANDIDATE (payload as on the wire).
	Signal(channelARN string, role kvsproto.Role, clientID string, msg kvsproto.ClientMessage)
	// Leave tells that a participant's signaling connection closed. Its
	// peer connection may live on (a signaling reconnect does not end
	// media), so this is a notice, not a teardown.
	Leave(channelARN string, role kvsproto.Role, clientID string)
	// End ends the channel's storage session: its links close (channel
	// deleted, media storage disabled, stream deleted).
	End(channelARN, reason string)
}

// StorageParticipant is one client of a storage session, as
// [StorageMedia.Join] sees it.
type StorageParticipant struct {
	ChannelARN  string
	ChannelName string
	// StreamARN is the stream the session records into.
	StreamARN string
	// Role is MASTER (JoinStorageSession) or VIEWER
	// (JoinStorageSessionAsViewer, with ClientID).
	Role     kvsproto.Role
	ClientID string
	// Send delivers a signaling event to the participant's current
	// connection, from the storage session: an SDP_OFFER or an
	// ICE_CANDIDATE, without senderClientId (as the service sends them).
	// It fails with an error matching ErrNotConnected when the
	// participant has no connection.
	Send func(kvsproto.Event) error
	// Record appends a fragment to the stream's archive (master links).
	Record func(ArchiveFragment) error
}

// ErrNotConnected is returned by [StorageParticipant.Send] when the
// participant has no signaling connection on the channel.
var ErrNotConnected = errors.New("emulator: participant not connected")

// participant builds the StorageParticipant of a join.
func (s *Server) participant(c *channel, role kvsproto.Role, clientID string) StorageParticipant {
	arn, stream := c.ARN, c.StorageStreamARN
	return StorageParticipant{
		ChannelARN: arn, ChannelName: c.Name, StreamARN: stream, Role: role, ClientID: clientID,
		Send: func(ev kvsproto.Event) error {
			ev.SenderClientID = ""
			if err := s.hub.Deliver(arn, role, clientID, ev); err != nil {
				if errors.Is(err, hub.ErrNotConnected) {
					return fmt.Errorf("%w: %w", ErrNotConnected, err)
				}
				return err
			}
			return nil
		},
		Record: func(f ArchiveFragment) error { return s.AppendFragment(stream, f) },
	}
}

// interceptStorage is the hub's Intercept: a message from a participant of
// the channel's storage session goes to the session instead of being
// routed. For the master those are the messages without recipientClientId
// (answers to the session's offer; the service needs no recipient for
// them), for a viewer in the session its answer and candidates.
func (s *Server) interceptStorage(arn string, role kvsproto.Role, clientID string, msg kvsproto.ClientMessage) bool {
	m := s.cfg.StorageMedia
	if m == nil {
		return false
	}
	if msg.Action != kvsproto.ActionSDPAnswer && msg.Action != kvsproto.ActionICECandidate {
		return false
	}
	if role == kvsproto.RoleMaster && msg.RecipientClientID != "" {
		return false
	}
	if !s.sessions.member(arn, role, clientID) {
		return false
	}
	m.Signal(arn, role, clientID, msg)
	return true
}
