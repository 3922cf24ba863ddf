package emulator

import (
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Kinesis Video WebRTC Storage (2018-05-10): JoinStorageSession and
// JoinStorageSessionAsViewer on the WEBRTC endpoint. The calls are
// validated and answered as the service does, and recorded as a storage
// session of the channel; the media side (the session's own peer that
// offers to the master and the viewers over signaling, records and
// forwards) is Config.StorageMedia (storagemedia.go). Choices where AWS is
// undocumented are in docs/EMULATOR.md, "Streams and WebRTC ingestion".

// Defaults of the storage session limits.
const (
	// DefaultStorageMaxViewers is the Multiviewer limit of viewers in one
	// storage session that the API reference of JoinStorageSessionAsViewer
	// states (3, while the feature is in preview).
	DefaultStorageMaxViewers = 3
	// storageViewerHold is how long a viewer keeps its slot after it left
	// (the API reference: one minute, during which the same client id can
	// re-join without using another slot).
	storageViewerHold = time.Minute
)

// StorageSession is what the emulator recorded of one channel's storage
// session: who asked to join and when (the media is Config.StorageMedia's).
type StorageSession struct {
	ChannelARN string
	// StreamARN is the stream the session records into (the channel's
	// media storage configuration at the first join).
	StreamARN string
	Created   time.Time
	// MasterJoins counts JoinStorageSession calls; the latest one takes
	// precedence (LastMasterJoin).
	MasterJoins    int
	LastMasterJoin time.Time
	// Viewers holds the viewers that joined with JoinStorageSessionAsViewer
	// and still hold a slot, by client id.
	Viewers []StorageViewer
}

// StorageViewer is one viewer of a StorageSession.
type StorageViewer struct {
	ClientID string
	Joins    int
	LastJoin time.Time
	// LeftAt is when the viewer's signaling connection closed (zero while
	// it is connected); the slot is kept for one minute after.
	LeftAt time.Time
}

type storageSession struct {
	StorageSession
	viewers map[string]*StorageViewer
}

// storageSessions holds the storage sessions of every channel.
type storageSessions struct {
	log        *slog.Logger
	maxViewers int
	media      StorageMedia // nil: joins are recorded, no media

	mu        sync.Mutex
	byChannel map[string]*storageSession
}

func newStorageSessions(log *slog.Logger, maxViewers int, media StorageMedia) *storageSessions {
	return &storageSessions{log: log, maxViewers: maxViewers, media: media, byChannel: map[string]*storageSession{}}
}

// member reports whether a connection takes part in the channel's storage
// session: the master once it joined, a viewer while it holds a slot and
// is connected.
func (ss *storageSessions) member(channelARN string, role kvsproto.Role, clientID string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	se := ss.byChannel[channelARN]
	if se == nil {
		return false
	}
	if role == kvsproto.RoleMaster {
		return se.MasterJoins > 0
	}
	v := se.viewers[clientID]
	return v != nil && v.LeftAt.IsZero()
}

// sessionFor returns the channel's session, creating it; the caller holds mu.
func (ss *storageSessions) sessionFor(channelARN, streamARN string, now time.Time) *storageSession {
	se := ss.byChannel[channelARN]
	if se == nil || se.StreamARN != streamARN {
		se = &storageSession{StorageSession: StorageSession{ChannelARN: channelARN, StreamARN: streamARN, Created: now}, viewers: map[string]*StorageViewer{}}
		ss.byChannel[channelARN] = se
	}
	return se
}

// joinMaster records a JoinStorageSession and reports whether it displaced
// an earlier one.
func (ss *storageSessions) joinMaster(channelARN, streamARN string, now time.Time) (replaced bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	se := ss.sessionFor(channelARN, streamARN, now)
	replaced = se.MasterJoins > 0
	se.MasterJoins++
	se.LastMasterJoin = now
	return replaced
}

// joinViewer records a JoinStorageSessionAsViewer, or refuses it when every
// slot is held by other viewers. connected reports whether a client id has
// a signaling connection on the channel.
func (ss *storageSessions) joinViewer(channelARN, streamARN, clientID string, now time.Time, connected func(string) bool) (rejoin bool, e *apiError) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	se := ss.sessionFor(channelARN, streamARN, now)
	for id, v := range se.viewers {
		if id != clientID && !v.LeftAt.IsZero() && now.Sub(v.LeftAt) >= storageViewerHold && !connected(id) {
			delete(se.viewers, id)
		}
	}
	v := se.viewers[clientID]
	if v == nil {
		if len(se.viewers) >= ss.maxViewers {
			return false, errClientLimit(fmt.Sprintf("The storage session of this channel already has the maximum of %d viewers; a viewer's slot is freed one minute after it leaves. Retry later, or re-join with the client id of a viewer that left.", ss.maxViewers))
		}
		v = &StorageViewer{ClientID: clientID}
		se.viewers[clientID] = v
	}
	rejoin = v.Joins > 0
	v.Joins++
	v.LastJoin = now
	v.LeftAt = time.Time{}
	return rejoin, nil
}

// left notes that a viewer's signaling connection closed: its slot is held
// for storageViewerHold from now.
func (ss *storageSessions) left(channelARN string, role kvsproto.Role, clientID string, now time.Time) {
	ss.mu.Lock()
	in := false
	if se := ss.byChannel[channelARN]; se != nil {
		if role == kvsproto.RoleMaster {
			in = se.MasterJoins > 0
		} else if v := se.viewers[clientID]; v != nil {
			v.LeftAt, in = now, true
		}
	}
	ss.mu.Unlock()
	if in && ss.media != nil {
		ss.media.Leave(channelARN, role, clientID)
	}
}

// end drops the channel's session (channel deleted, storage disabled).
func (ss *storageSessions) end(channelARN, why string) {
	ss.mu.Lock()
	_, ok := ss.byChannel[channelARN]
	delete(ss.byChannel, channelARN)
	ss.mu.Unlock()
	if ok {
		ss.log.Info("storage session ended", "channel_arn", channelARN, "reason", why)
		if ss.media != nil {
			ss.media.End(channelARN, why)
		}
	}
}

// endForStream drops the sessions that record into a deleted stream and
// returns how many there were.
func (ss *storageSessions) endForStream(streamARN string) int {
	ss.mu.Lock()
	var ended []string
	for arn, se := range ss.byChannel {
		if se.StreamARN == streamARN {
			delete(ss.byChannel, arn)
			ended = append(ended, arn)
		}
	}
	ss.mu.Unlock()
	if ss.media != nil {
		for _, arn := range ended {
			ss.media.End(arn, "stream deleted")
		}
	}
	return len(ended)
}

func (ss *storageSessions) snapshot() []StorageSession {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]StorageSession, 0, len(ss.byChannel))
	for _, se := range ss.byChannel {
		cp := se.StorageSession
		cp.Viewers = make([]StorageViewer, 0, len(se.viewers))
		for _, v := range se.viewers {
			cp.Viewers = append(cp.Viewers, *v)
		}
		sort.Slice(cp.Viewers, func(i, j int) bool { return cp.Viewers[i].ClientID < cp.Viewers[j].ClientID })
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ChannelARN < out[j].ChannelARN })
	return out
}

// StorageSessions returns the storage sessions recorded so far (one per
// channel with a join), by channel ARN.
func (s *Server) StorageSessions() []StorageSession { return s.sessions.snapshot() }

// storageAccessDenied is the storage API's AccessDeniedException (403 in
// its model, unlike the control plane's 401).
func storageAccessDenied(msg string) *apiError {
	return &apiError{http.StatusForbidden, kvsproto.ErrCodeAccessDenied, msg}
}

// resolveStorageChannel validates channelArn and returns the channel and
// the stream it records into, with the storage API's errors.
func (s *Server) resolveStorageChannel(arn string) (*channel, *apiError) {
	if arn == "" {
		return nil, missing("channelArn")
	}
	a, err := kvsproto.ParseChannelARN(arn)
	if err != nil {
		return nil, invalidFrom("channelArn", err)
	}
	if a.Region != s.cfg.Region || a.Account != s.cfg.AccountID || a.Partition != kvsproto.PartitionForRegion(s.cfg.Region) {
		return nil, storageAccessDenied(fmt.Sprintf("User is not authorized to access %s: this service holds only the channels of account %s in %s.", arn, s.cfg.AccountID, s.cfg.Region))
	}
	c, ok := s.store.byARNGet(arn)
	if !ok {
		return nil, errNotFound(channelNotFoundMsg)
	}
	if c.StorageStreamARN == "" {
		return nil, errInvalidArgument(fmt.Sprintf("The signaling channel %s is not configured for media storage: link it to a stream with UpdateMediaStorageConfiguration (Status ENABLED, StreamARN of a stream with data retention) before joining its storage session.", c.Name))
	}
	if _, ok := s.store.streamByARN(c.StorageStreamARN); !ok {
		return nil, errNotFound(fmt.Sprintf("The stream %s that channel %s stores its media in is not found (was it deleted?): create a stream and link it with UpdateMediaStorageConfiguration.", c.StorageStreamARN, c.Name))
	}
	return c, nil
}

func (s *Server) opJoinStorageSession(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.JoinStorageSessionInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	c, e := s.resolveStorageChannel(in.ChannelArn)
	if e != nil {
		return nil, e
	}
	if !s.hub.Connected(c.ARN, kvsproto.RoleMaster, "") {
		return nil, errNotFound(fmt.Sprintf("No master is connected to the signaling channel %s: connect as master (ConnectAsMaster on the WSS endpoint) first, then call JoinStorageSession; the storage session sends its offer over that connection.", c.Name))
	}
	replaced := s.sessions.joinMaster(c.ARN, c.StorageStreamARN, s.now())
	if replaced {
		s.log.Info("storage session: a newer JoinStorageSession takes precedence over the earlier one", "channel", c.Name)
	}
	if m := s.cfg.StorageMedia; m != nil {
		s.log.Info("storage session: the master joined; the session sends it an offer",
			"channel", c.Name, "stream_arn", c.StorageStreamARN, "remote", r.RemoteAddr)
		m.Join(s.participant(c, kvsproto.RoleMaster, ""))
	} else {
		s.log.Warn("storage session requested by the master; this server runs no storage session media (emulator.Config.StorageMedia is nil): no SDP offer will be sent, nothing is recorded",
			"channel", c.Name, "stream_arn", c.StorageStreamARN, "remote", r.RemoteAddr)
	}
	return struct{}{}, nil
}

func (s *Server) opJoinStorageSessionAsViewer(r *http.Request, body []byte) (any, *apiError) {
	var in kvsproto.JoinStorageSessionAsViewerInput
	if e := decodeBody(body, &in); e != nil {
		return nil, e
	}
	if in.ChannelArn == "" {
		return nil, missing("channelArn")
	}
	if in.ClientID == "" {
		return nil, missing("clientId")
	}
	if err := kvsproto.ValidateClientID(in.ClientID); err != nil {
		return nil, invalidFrom("clientId", err)
	}
	c, e := s.resolveStorageChannel(in.ChannelArn)
	if e != nil {
		return nil, e
	}
	connected := func(id string) bool { return s.hub.Connected(c.ARN, kvsproto.RoleViewer, id) }
	if !connected(in.ClientID) {
		return nil, errNotFound(fmt.Sprintf("No viewer with client id %s is connected to the signaling channel %s: connect as viewer (ConnectAsViewer with X-Amz-ClientId=%s) first, then join with the same client id; the storage session sends its offer over that connection.", in.ClientID, c.Name, in.ClientID))
	}
	rejoin, e := s.sessions.joinViewer(c.ARN, c.StorageStreamARN, in.ClientID, s.now(), connected)
	if e != nil {
		return nil, e
	}
	master := s.hub.Connected(c.ARN, kvsproto.RoleMaster, "")
	if m := s.cfg.StorageMedia; m != nil {
		s.log.Info("storage session: a viewer joined; the session sends it an offer",
			"channel", c.Name, "client_id", in.ClientID, "rejoin", rejoin, "master_connected", master, "remote", r.RemoteAddr)
		m.Join(s.participant(c, kvsproto.RoleViewer, in.ClientID))
	} else {
		s.log.Warn("storage session requested by a viewer; this server runs no storage session media (emulator.Config.StorageMedia is nil): no SDP offer will be sent",
			"channel", c.Name, "client_id", in.ClientID, "rejoin", rejoin, "master_connected", master, "remote", r.RemoteAddr)
	}
	return struct{}{}, nil
}
