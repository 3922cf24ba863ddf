package viewer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// Config configures a viewer Session. Channel and Control are required;
// every other zero value works.
type Config struct {
	// Channel is the signaling channel's name or ARN.
	Channel string
	// Control is the control-plane client (credentials, region, endpoint).
	Control *control.Client
	// ICECache shares ICE server configurations between sessions. Nil: the
	// session keeps its own.
	ICECache *control.ICECache

	// ClientID is the client id of the first attempt; later attempts get
	// fresh ids (an id is never reused within ClientIDReuseWindow). Empty:
	// generated from ClientIDPrefix.
	ClientID string
	// ClientIDPrefix starts every generated client id ("" = "kvsrtc-").
	ClientIDPrefix string

	// Retry is the answer timeout and retry policy. Zero fields take
	// DefaultRetryPolicy's values; SeedRetryPolicy reproduces the blog
	// post's viewer.
	Retry RetryPolicy
	// WaitForSlot makes a full channel (viewer limit reached) a retryable
	// condition instead of an immediate failure (with Storage: a full
	// storage session).
	WaitForSlot bool
	// Storage views through the channel's storage session (Multiviewer,
	// for channels with WebRTC ingestion) instead of asking the master:
	// each attempt joins it with JoinStorageSessionAsViewer and answers
	// its offer. See storage.go for the rules; Data is not available (the
	// session has no data channel: it is reported as declined).
	Storage bool

	// Audio also asks for the master's audio.
	Audio bool
	// VideoCodecs are the video codecs to offer, in order of preference
	// ("H264", "VP8"); nil offers both, H.264 first.
	VideoCodecs []string
	// ForceRelay uses TURN relay candidates only (ICE transport policy
	// "relay").
	ForceRelay bool
	// LoopbackOnly gathers only loopback ICE candidates (tests, demo).
	LoopbackOnly bool

	// Talk is an Opus source sent to the master as talk-back audio
	// (media.OpenFile of an Ogg/Opus file, media.NewTestSource(rtc.CodecOpus,
	// ...) for a tone, media.NewOpusStream for stdin). The offer's audio
	// section then sends (send-receive with Audio), in the same offer. A
	// master that does not take it is reported in Event.Declined
	// (ErrTalkbackDeclined); video is not affected. Run reads it for the
	// session's lifetime and closes it; if Run is never called, the caller
	// closes it.
	Talk media.Source
	// Data opens a data channel ("kvsDataChannel", as the official
	// samples do) in the same offer, in every attempt: use Session.Send
	// and Session.Receive.
	Data bool

	// Sinks receive every video (and audio) frame. They are shared by all
	// attempts of the session, so a recording spans reconnects.
	Sinks []media.Sink
	// Duration stops the session after streaming this long in all (the
	// time spent reconnecting does not count). 0: until the context ends.
	Duration time.Duration
	// StallTimeout is how long streaming may go without a video frame
	// before the session reconnects. 0: 5 s.
	StallTimeout time.Duration
	// ICERestartTimeout is how long an ICE restart may take before the
	// session reconnects from scratch. 0: AnswerTimeout + 5 s.
	ICERestartTimeout time.Duration
	// DisconnectedGrace is how long ICE may stay "disconnected" before the
	// session restarts ICE. 0: 3 s.
	DisconnectedGrace time.Duration
	// MaxRecoveries bounds full reconnects after media has flowed. 0: no
	// bound (recover until the context ends); -1: never recover.
	MaxRecoveries int

	// PingInterval is the signaling keepalive interval (0: 10 s). A
	// signaling connection that dies without a close frame is noticed
	// within PingInterval + PongTimeout and renewed.
	PingInterval time.Duration
	// PongTimeout is how long a keepalive ping may go unanswered before
	// the signaling connection is declared dead (0: 5 s).
	PongTimeout time.Duration
	// SignalingRenewAfter is the age at which the signaling connection is
	// replaced by a new one, ahead of the service's 1-hour limit, without
	// touching the media (0: 50 min; negative: only when the service asks
	// or the connection ends).
	SignalingRenewAfter time.Duration
	// HTTPClient is used for the signaling WebSocket handshake (TLS roots).
	// Nil: http.DefaultClient.
	HTTPClient *http.Client

	// OnEvent is called on every state change, by one goroutine at a time
	// (Run's, or an attempt's while a late answer is awaited); it must not
	// block.
	OnEvent func(Event)
	// Logger receives the session's logs (nil: discard).
	Logger *slog.Logger

	// rand is the jitter source (tests); nil = shared.
	rand *rand.Rand
	// iceNet is the network stack ICE uses (tests); nil = the system's.
	iceNet transport.Net
}

// Summary is what a session did, for reports (kvsrtc view --json).
type Summary struct {
	Result           string        `json:"result"` // "streamed", "failed", "stopped"
	Attempts         int           `json:"attempts"`
	Recoveries       int           `json:"recoveries"`
	TimeToFirstFrame time.Duration `json:"-"`
	TimeToFirstMS    float64       `json:"timeToFirstFrameMs,omitempty"`
	Frames           int64         `json:"frames"`
	Keyframes        int64         `json:"keyframes"`
	Bytes            int64         `json:"bytes"`
	AudioFrames      int64         `json:"audioFrames,omitempty"`
	Codec            string        `json:"codec,omitempty"`
	Width            int           `json:"width,omitempty"`
	Height           int           `json:"height,omitempty"`
	ChannelARN       string        `json:"channelArn,omitempty"`
	Cause            Cause         `json:"cause,omitempty"`
	Error            string        `json:"error,omitempty"`

	// TalkPackets counts the talk-back (Opus) packets sent.
	TalkPackets int64 `json:"talkPackets,omitempty"`
	// MessagesSent and MessagesReceived count data channel messages.
	MessagesSent     int64 `json:"messagesSent,omitempty"`
	MessagesReceived int64 `json:"messagesReceived,omitempty"`
}

// Session is one viewer's connection to a channel, across attempts.
type Session struct {
	cfg   Config
	log   *slog.Logger
	api   *webrtc.API
	ids   *ClientIDs
	ice   *control.ICECache
	video *media.Stats
	audio *media.Stats
	tw    *twoWay

	mu      sync.Mutex
	summary Summary
	state   State
	ran     bool
	start   time.Time
	winner  *attemptRun // the attempt that took an answer in this connect cycle
	// streamed is the time earlier attempts streamed (Duration counts the
	// session's streaming, not each attempt's); reconnectAt is when the
	// latest recovery began (zero before one).
	streamed    time.Duration
	reconnectAt time.Time

	emitMu sync.Mutex // OnEvent is called by one goroutine at a time

	keyReq atomic.Pointer[func()] // asks the current attempt's master for a keyframe
}

// RequestKeyframe asks the master for a keyframe (an RTCP picture loss
// indication on the video track of the current connection), as a relay
// does when a peer joins and the GOP it has cached is too old to start
// from. It does nothing before the video track arrives; the master may
// ignore it (a file source cannot make keyframes on demand).
func (s *Session) RequestKeyframe() {
	if f := s.keyReq.Load(); f != nil {
		(*f)()
	}
}

// New validates cfg and returns a session ready to Run.
func New(cfg Config) (*Session, error) {
	if cfg.Control == nil {
		return nil, fmt.Errorf("%w: Config.Control is required", ErrInvalidConfig)
	}
	if strings.TrimSpace(cfg.Channel) == "" {
		return nil, fmt.Errorf("%w: a channel name or ARN is required (--channel)", ErrInvalidConfig)
	}
	if strings.HasPrefix(cfg.Channel, "arn:") {
		if _, err := kvsproto.ParseChannelARN(cfg.Channel); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	} else if err := kvsproto.ValidateChannelName(cfg.Channel); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	p, err := cfg.Retry.WithDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Retry = p
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = 5 * time.Second
	}
	if cfg.ICERestartTimeout == 0 {
		cfg.ICERestartTimeout = cfg.Retry.AnswerTimeout + 5*time.Second
	}
	if cfg.DisconnectedGrace == 0 {
		cfg.DisconnectedGrace = 3 * time.Second
	}
	if cfg.SignalingRenewAfter == 0 {
		cfg.SignalingRenewAfter = DefaultSignalingRenewAfter
	}
	if err := cfg.checkStorage(); err != nil {
		return nil, err
	}
	if err := media.CheckTalkback(cfg.Talk, "Config.Talk"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Duration < 0 || cfg.StallTimeout < 0 || cfg.ICERestartTimeout < 0 || cfg.DisconnectedGrace < 0 || cfg.PongTimeout < 0 {
		return nil, fmt.Errorf("%w: durations must not be negative", ErrInvalidConfig)
	}
	ids := &ClientIDs{Prefix: cfg.ClientIDPrefix, Now: cfg.Control.Now}
	if cfg.ClientID != "" {
		if err := ids.Use(cfg.ClientID); err != nil {
			return nil, &SessionError{Stage: "config", Cause: CauseClientID, Err: err}
		}
	} else if _, err := ids.Next(); err != nil { // validates the prefix
		return nil, &SessionError{Stage: "config", Cause: CauseClientID, Err: err}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	api, err := rtc.NewAPI(rtc.Config{LoopbackOnly: cfg.LoopbackOnly, Logger: log, VideoCodecs: cfg.VideoCodecs, Audio: cfg.Audio || cfg.Talk != nil || cfg.Storage, TURNRootCAs: rtc.RootCAs(cfg.HTTPClient), Net: cfg.iceNet})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	ice := cfg.ICECache
	if ice == nil {
		ice = control.NewICECache(cfg.Control)
	}
	return &Session{
		cfg: cfg, log: log.With("component", "viewer"), api: api, ids: ids, ice: ice,
		video: media.NewStats(0), audio: media.NewStats(0), tw: newTwoWay(cfg),
	}, nil
}

// DefaultSignalingRenewAfter is the default Config.SignalingRenewAfter:
// ten minutes inside the service's 1-hour connection limit.
const DefaultSignalingRenewAfter = 50 * time.Minute

// ErrInvalidConfig is matched by configuration errors from New.
var ErrInvalidConfig = errors.New("viewer: invalid config")

// Stats returns the video statistics of the session so far (all attempts).
func (s *Session) Stats() media.StatsSnapshot { return s.video.Snapshot() }

// State returns the current state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Summary returns what the session did so far (complete after Run returns).
func (s *Session) Summary() Summary {
	s.mu.Lock()
	sum := s.summary
	s.mu.Unlock()
	v := s.video.Snapshot()
	sum.Frames, sum.Keyframes, sum.Bytes = v.Frames, v.Keyframes, v.Bytes
	sum.Codec = string(v.Codec)
	sum.Width, sum.Height = v.Width, v.Height
	sum.AudioFrames = s.audio.Snapshot().Frames
	sum.TalkPackets = s.tw.talkPackets.Load()
	sum.MessagesSent, sum.MessagesReceived = s.tw.sent.Load(), s.tw.received.Load()
	if sum.TimeToFirstFrame > 0 {
		sum.TimeToFirstMS = float64(sum.TimeToFirstFrame.Microseconds()) / 1000
	}
	return sum
}

func (s *Session) emit(e Event) {
	e.Time = time.Now()
	s.mu.Lock()
	s.state = e.State
	if e.TimeToFirstFrame > 0 && s.summary.TimeToFirstFrame == 0 {
		s.summary.TimeToFirstFrame = e.TimeToFirstFrame
	}
	s.mu.Unlock()
	lvl := slog.LevelInfo
	if e.State == StateFailed || e.State == StateReconnecting {
		lvl = slog.LevelWarn
	}
	s.log.Log(context.Background(), lvl, "state", "state", e.State, "attempt", e.Attempt, "clientId", e.ClientID, "cause", e.Cause, "detail", e.Detail)
	if s.cfg.OnEvent != nil {
		s.emitMu.Lock()
		defer s.emitMu.Unlock()
		s.cfg.OnEvent(e)
	}
}

// Run connects and streams until the context ends, Duration has streamed,
// or the session gives up (a *SessionError). It returns only after every
// goroutine, socket and peer connection of the session is gone. A session
// runs once.
func (s *Session) Run(ctx context.Context) (err error) {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return errors.New("viewer: Run called twice")
	}
	s.ran = true
	s.start = time.Now()
	s.mu.Unlock()
	stopTalk := s.runTalk(ctx)
	defer s.tw.end()
	defer stopTalk()

	defer func() {
		s.mu.Lock()
		switch {
		case err != nil:
			s.summary.Result = "failed"
			s.summary.Error = err.Error()
			var se *SessionError
			if errors.As(err, &se) {
				s.summary.Cause = se.Cause
			}
		case s.video.Snapshot().Frames > 0:
			s.summary.Result = "streamed"
		default:
			s.summary.Result = "stopped"
		}
		s.mu.Unlock()
		if err != nil {
			var se *SessionError
			ev := Event{State: StateFailed, Err: err, Detail: err.Error()}
			if errors.As(err, &se) {
				ev.Cause, ev.Attempt, ev.Detail = se.Cause, se.Attempts, se.Diagnosis()
			}
			s.emit(ev)
		} else {
			s.emit(Event{State: StateStopped})
		}
	}()

	s.emit(Event{State: StateConnecting, Attempt: 1, Detail: "resolving channel " + s.cfg.Channel})
	ch, err := s.resolve(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		cause, _ := classify(err)
		s.mu.Lock()
		s.summary.Attempts = 1 // the summary agrees with the error
		s.mu.Unlock()
		return &SessionError{Stage: "control", Cause: cause, Attempts: 1, Err: err}
	}
	s.mu.Lock()
	s.summary.ChannelARN = ch.ARN
	s.mu.Unlock()

	return s.connect(ctx, ch)
}

// resolve finds the channel, retrying what retrying can fix (throttling,
// network errors) within the retry policy.
func (s *Session) resolve(ctx context.Context) (control.Channel, error) {
	for n := 1; ; n++ {
		ch, err := s.cfg.Control.ResolveChannel(ctx, s.cfg.Channel)
		if err == nil || ctx.Err() != nil {
			return ch, err
		}
		cause, fatal := classify(err)
		if fatal || n >= s.cfg.Retry.MaxAttempts {
			return ch, err
		}
		wait := s.cfg.Retry.Backoff(n, s.cfg.rand)
		if cause == CauseThrottled {
			wait = max(wait, s.cfg.Retry.Throttled(n, s.cfg.rand))
		}
		s.emit(Event{State: StateReconnecting, Attempt: 1, Cause: cause, Detail: fmt.Sprintf("resolving the channel failed (%v); again in %v", err, wait.Round(time.Millisecond))})
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ch, ctx.Err()
		case <-t.C:
		}
	}
}

// classify maps an error to a cause, and says whether retrying cannot fix
// it: package cause's one classification.
func classify(err error) (Cause, bool) { return cause.Classify(err) }
