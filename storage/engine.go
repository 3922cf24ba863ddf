package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// Defaults of Config.
const (
	// DefaultConnectTimeout bounds how long a link may take from its offer
	// to a connected peer connection (the JS SDK's own retry waits 30 s).
	DefaultConnectTimeout = 30 * time.Second
	// DefaultTalkIdle releases the talk-back floor after this long without
	// a viewer's voice packet.
	DefaultTalkIdle = time.Second
	// DefaultViewerAlone is how long a viewer stays in a storage session
	// without a connected camera: the limit the JoinStorageSessionAsViewer
	// API reference states (3 minutes).
	DefaultViewerAlone = 3 * time.Minute
	// DefaultMaxFragment is the longest GOP the session records before it
	// asks the camera for a keyframe: well inside the 10 s that Kinesis
	// Video Streams allows a fragment.
	DefaultMaxFragment = 4 * time.Second
	// DefaultSessionLimit is how long a participant's peer connection with
	// the storage session lasts: the service's documented maximum session
	// duration (one hour). Clients join again, as the JS SDK's sample does
	// when it loses the connection.
	DefaultSessionLimit = time.Hour
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("storage: engine closed")

// Config configures an [Engine]. The zero value works for a server that
// viewers and cameras reach on this machine's addresses.
type Config struct {
	// RTC configures the session's peer connections (LoopbackOnly in
	// tests). Audio is always on and the video codec is H.264, the one
	// codec WebRTC ingestion takes.
	RTC rtc.Config
	// ICEServers for the session's peer connections (none needed when
	// clients reach the server directly).
	ICEServers []webrtc.ICEServer
	// ConnectTimeout: DefaultConnectTimeout when 0.
	ConnectTimeout time.Duration
	// TalkIdle: DefaultTalkIdle when 0.
	TalkIdle time.Duration
	// ViewerAlone: DefaultViewerAlone when 0.
	ViewerAlone time.Duration
	// MaxFragment bounds the recording's fragments (one per GOP): while
	// recording, a GOP that reaches it makes the session ask the camera for
	// a keyframe (PLI), and again after every further second without one.
	// WebRTC encoders (Chromium's, the C SDK's) send keyframes only when
	// asked, so without this a fragment would last as long as the camera.
	// DefaultMaxFragment when 0.
	MaxFragment time.Duration
	// SessionLimit ends a link (the camera's or a viewer's peer
	// connection) this long after its offer; the participant joins again.
	// DefaultSessionLimit when 0.
	SessionLimit time.Duration
	// QueueSamples bounds each viewer's send queue (0: the media default).
	QueueSamples int
	// DisableRecording forwards without recording into the stream (the
	// service always records; benchmarks measure what recording costs).
	DisableRecording bool
	// Logger receives the sessions' logs; nil discards them.
	Logger *slog.Logger
}

// Engine runs the storage sessions of one emulator. It implements
// [emulator.StorageMedia]; pass it as emulator.Config.StorageMedia and
// Close it after the emulator.
type Engine struct {
	cfg Config
	api *webrtc.API
	log *slog.Logger

	mu       sync.Mutex
	closed   bool
	sessions map[string]*session // by channel ARN
}

var _ emulator.StorageMedia = (*Engine)(nil)

// New returns an Engine.
func New(cfg Config) (*Engine, error) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.TalkIdle <= 0 {
		cfg.TalkIdle = DefaultTalkIdle
	}
	if cfg.ViewerAlone <= 0 {
		cfg.ViewerAlone = DefaultViewerAlone
	}
	if cfg.MaxFragment <= 0 {
		cfg.MaxFragment = DefaultMaxFragment
	}
	if cfg.SessionLimit <= 0 {
		cfg.SessionLimit = DefaultSessionLimit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rc := cfg.RTC
	rc.Audio = true
	rc.VideoCodecs = []string{string(rtc.CodecH264)}
	if rc.Logger == nil {
		rc.Logger = cfg.Logger
	}
	api, err := rtc.NewAPI(rc)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return &Engine{cfg: cfg, api: api, log: cfg.Logger, sessions: map[string]*session{}}, nil
}

// sessionFor returns the channel's session, creating it.
func (e *Engine) sessionFor(p emulator.StorageParticipant) (*session, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	s := e.sessions[p.ChannelARN]
	if s == nil || s.streamARN != p.StreamARN {
		if s != nil {
			go s.end("the channel now stores into another stream")
		}
		s = newSession(e, p)
		e.sessions[p.ChannelARN] = s
	}
	return s, nil
}

func (e *Engine) session(arn string) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sessions[arn]
}

// Join starts a link to the participant: the session offers to it.
func (e *Engine) Join(p emulator.StorageParticipant) {
	s, err := e.sessionFor(p)
	if err != nil {
		e.log.Warn("storage session: join ignored", "channel", p.ChannelName, "reason", err)
		return
	}
	s.join(p)
}

// Signal hands a participant's answer or candidate to its link.
func (e *Engine) Signal(channelARN string, role kvsproto.Role, clientID string, msg kvsproto.ClientMessage) {
	s := e.session(channelARN)
	if s == nil {
		e.log.Debug("storage session: message for no session", "channel_arn", channelARN, "role", role, "action", msg.Action)
		return
	}
	s.signal(role, clientID, msg)
}

// Leave notes that a participant's signaling connection closed; its link
// goes on until its peer connection ends or it re-joins.
func (e *Engine) Leave(channelARN string, role kvsproto.Role, clientID string) {
	if s := e.session(channelARN); s != nil {
		s.log.Debug("storage session: a participant's signaling connection closed; its peer connection goes on",
			"role", role, "client_id", clientID)
	}
}

// End closes the channel's session and its links.
func (e *Engine) End(channelARN, reason string) {
	e.mu.Lock()
	s := e.sessions[channelARN]
	delete(e.sessions, channelARN)
	e.mu.Unlock()
	if s != nil {
		s.end(reason)
	}
}

// forget drops a session that ended by itself.
func (e *Engine) forget(s *session) {
	e.mu.Lock()
	if e.sessions[s.arn] == s {
		delete(e.sessions, s.arn)
	}
	e.mu.Unlock()
}

// Close ends every session.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	all := e.sessions
	e.sessions = map[string]*session{}
	e.mu.Unlock()
	for _, s := range all {
		s.end("the service is shutting down")
	}
	return nil
}

// Stats is a snapshot of the engine's sessions.
type Stats struct {
	Sessions []SessionStats
}

// SessionStats describes one channel's storage session.
type SessionStats struct {
	ChannelARN, ChannelName, StreamARN string
	// MasterConnected: the camera's link is connected.
	MasterConnected bool
	// Viewers counts the viewer links, Connected those connected.
	Viewers, Connected int
	// BytesIn and FramesIn count the camera's video (payload bytes).
	BytesIn, FramesIn uint64
	// AudioIn counts the camera's audio payload bytes.
	AudioIn uint64
	// Fragments and RecordedBytes count what was recorded into the stream;
	// RecordErrors the fragments the archive refused.
	Fragments, RecordedBytes, RecordErrors uint64
	// TalkPackets counts viewers' voice packets sent to the camera.
	TalkPackets uint64
}

// Stats returns a snapshot.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	all := make([]*session, 0, len(e.sessions))
	for _, s := range e.sessions {
		all = append(all, s)
	}
	e.mu.Unlock()
	var st Stats
	for _, s := range all {
		st.Sessions = append(st.Sessions, s.stats())
	}
	return st
}
