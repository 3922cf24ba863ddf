package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/retry"
)

// Defaults of Config.
const (
	DefaultAnswerWait  = 15 * time.Second
	DefaultConnectWait = 10 * time.Second
	DefaultMediaWait   = 10 * time.Second
)

// ErrInvalidConfig is matched by the errors Run returns for a Config it
// cannot use (nothing else is an error: failed checks are in the Report).
var ErrInvalidConfig = errors.New("doctor: invalid config")

// Config configures a diagnosis. Channel and Control are required.
type Config struct {
	// Channel is the signaling channel's name or ARN.
	Channel string
	// Control is the control-plane client (credentials, region,
	// endpoint) the checks use, as a viewer would.
	Control *control.Client
	// ClientID is the viewer client id to check and connect with. Empty:
	// a fresh "kvsrtc-doctor-..." id, so that no other viewer is displaced.
	ClientID string
	// STSEndpoint is the STS endpoint of the credentials check. Empty: the
	// control-plane endpoint when it is not an AWS host (the local
	// emulator answers GetCallerIdentity), else the SDK's resolution
	// (AWS_ENDPOINT_URL_STS, then the regional STS endpoint).
	STSEndpoint string
	// HTTPClient is used for the signaling WebSocket handshake (TLS roots).
	// Nil: http.DefaultClient.
	HTTPClient *http.Client
	// AnswerWait is how long to wait for the master's answer (0: 15 s):
	// longer than a viewer's answer timeout, so that a master that answers
	// slowly is told apart from one that does not answer at all. The
	// service keeps an undelivered offer for the channel's message TTL, so
	// a master that connects within it still answers.
	AnswerWait time.Duration
	// Viewer is the viewer retry policy an answer time is judged by (zero
	// fields: retry.Default's): an answer slower than its
	// AnswerTimeout is a finding (status warn), one slower than its
	// LateAnswerWindow too (a failure: that viewer never gets it).
	Viewer retry.Policy
	// ConnectWait is how long ICE may take to connect after the answer
	// (0: 10 s).
	ConnectWait time.Duration
	// MediaWait is how long to wait for the first video frame once
	// connected (0: 10 s).
	MediaWait time.Duration
	// VideoCodecs are the video codecs to offer (nil: H264 and VP8).
	VideoCodecs []string
	// Audio makes the media check also wait for the master's audio and
	// report its packets. The offer always has a receive-only audio
	// section, so that a master that sends audio unasked (the KVS C SDK
	// does) is received cleanly.
	Audio bool
	// ForceRelay uses TURN relay candidates only for the media check.
	ForceRelay bool
	// LoopbackOnly gathers only loopback ICE candidates (tests).
	LoopbackOnly bool
	// Logger receives debug logs (nil: discard).
	Logger *slog.Logger
	// OnCheck, if set, is called as each check finishes, in order.
	OnCheck func(Check)
}

func (c Config) withDefaults() (Config, error) {
	if c.Control == nil {
		return c, fmt.Errorf("%w: Control is required", ErrInvalidConfig)
	}
	if strings.TrimSpace(c.Channel) == "" {
		return c, fmt.Errorf("%w: a channel name or ARN is required (--channel)", ErrInvalidConfig)
	}
	if c.AnswerWait == 0 {
		c.AnswerWait = DefaultAnswerWait
	}
	if c.ConnectWait == 0 {
		c.ConnectWait = DefaultConnectWait
	}
	if c.MediaWait == 0 {
		c.MediaWait = DefaultMediaWait
	}
	if c.AnswerWait < 0 || c.ConnectWait < 0 || c.MediaWait < 0 {
		return c, fmt.Errorf("%w: waits must not be negative", ErrInvalidConfig)
	}
	p, err := c.Viewer.WithDefaults()
	if err != nil {
		return c, fmt.Errorf("%w: Viewer: %w", ErrInvalidConfig, err)
	}
	c.Viewer = p
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Status is the outcome of a check.
type Status string

// Check outcomes.
const (
	StatusPass Status = "pass"
	StatusWarn Status = "warn" // works, with a finding (e.g. a master that answers slowly)
	StatusFail Status = "fail"
	StatusSkip Status = "skip" // not run: an earlier check failed, or it does not apply
)

// String returns the status name.
func (s Status) String() string { return string(s) }

// Names of the checks, in the order they run.
const (
	CheckCredentials = "credentials"
	CheckClock       = "clock"
	CheckChannel     = "channel"
	CheckEndpoints   = "endpoints"
	CheckICEServers  = "ice-servers"
	CheckTURN        = "turn"
	CheckClientID    = "client-id"
	CheckSignaling   = "signaling"
	CheckMaster      = "master"
	CheckICE         = "ice"
	CheckMedia       = "media"
	// CheckStorage joins the channel's storage session as a viewer
	// (Multiviewer) and waits for its offer and the camera's video; it
	// runs only when the channel's media storage is ENABLED.
	CheckStorage = "storage"
)

// Fact is one piece of evidence of a check.
type Fact struct {
	Key   string
	Value any
}

// Facts is evidence in the order it was gathered; it marshals to a JSON
// object.
type Facts []Fact

// MarshalJSON writes the facts as one JSON object, in order.
func (fs Facts) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(f.Key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.Value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Check is the result of one check.
type Check struct {
	// Name is one of the Check* constants.
	Name string `json:"name"`
	// Title says what was checked, for people.
	Title string `json:"title"`
	// Status is pass, warn, fail or skip.
	Status Status `json:"status"`
	// Duration is how long the check took.
	Duration time.Duration `json:"-"`
	// Evidence is what the check saw.
	Evidence Facts `json:"evidence,omitempty"`
	// Detail explains a failure, a finding or a skip (or notes something
	// on a pass).
	Detail string `json:"detail,omitempty"`
	// Cause is what a failure or finding means, in cause.Cause terms.
	Cause cause.Cause `json:"cause,omitempty"`
	// Advice is what to do about a failure or finding.
	Advice string `json:"advice,omitempty"`
	// Err is the underlying error of a failure (not serialized).
	Err error `json:"-"`
}

// MarshalJSON adds durationMs.
func (c Check) MarshalJSON() ([]byte, error) {
	type plain Check
	return json.Marshal(struct {
		plain
		DurationMS float64 `json:"durationMs"`
	}{plain(c), ms(c.Duration)})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Verdict is the conclusion of a diagnosis.
type Verdict struct {
	// OK is true when every check passed (skips aside): a failure or a
	// finding (warn) makes it false.
	OK bool `json:"ok"`
	// Cause is the most likely reason the viewer gets no answer or no
	// video (CauseNone when OK).
	Cause cause.Cause `json:"cause,omitempty"`
	// SeedReason is the number of the reason in the blog post's list of
	// nine (0: a cause the post does not list).
	SeedReason int `json:"seedReason,omitempty"`
	// Check is the check that found it.
	Check string `json:"check,omitempty"`
	// Summary is one sentence.
	Summary string `json:"summary"`
	// Advice says what to do.
	Advice string `json:"advice,omitempty"`
}

// Report is the result of Run.
type Report struct {
	Channel    string        `json:"channel"`
	ChannelARN string        `json:"channelArn,omitempty"`
	Region     string        `json:"region"`
	ClientID   string        `json:"clientId,omitempty"`
	Started    time.Time     `json:"started"`
	Duration   time.Duration `json:"-"`
	Checks     []Check       `json:"checks"`
	Verdict    Verdict       `json:"verdict"`
}

// OK reports whether every check passed (skips aside).
func (r *Report) OK() bool { return r.Verdict.OK }

// Check returns the check of that name (zero Check if it did not run).
func (r *Report) Check(name string) Check {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return Check{}
}

// MarshalJSON adds durationMs.
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	return json.Marshal(struct {
		*plain
		DurationMS float64 `json:"durationMs"`
	}{(*plain)(r), ms(r.Duration)})
}

// Run runs the checks in order and returns the report. It returns an
// error only for an invalid Config; a failing check is a Report whose
// Verdict is not OK. Run returns after everything it started is gone.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(cfg.Channel, "arn:") {
		if _, err := kvsproto.ParseChannelARN(cfg.Channel); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	} else if err := kvsproto.ValidateChannelName(cfg.Channel); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	d := &run{cfg: cfg, ctl: cfg.Control, log: cfg.Logger.With("component", "doctor")}
	d.rep = &Report{Channel: cfg.Channel, Region: d.ctl.Region(), Started: time.Now()}
	d.checkCredentials(ctx)
	d.checkClock(ctx)
	d.checkChannel(ctx)
	d.checkEndpoints(ctx)
	d.checkICEServers(ctx)
	d.checkTURN(ctx)
	d.checkClientID()
	d.checkSession(ctx)
	d.checkStorage(ctx)
	d.rep.Duration = time.Since(d.rep.Started)
	d.rep.Verdict = verdict(d.rep.Checks)
	return d.rep, nil
}

// run is the state of one Run.
type run struct {
	cfg Config
	ctl *control.Client
	log *slog.Logger
	rep *Report

	stsDate   time.Time // the service's Date from the STS answer (zero if none)
	stsLocal  time.Time // local time that answer arrived
	channel   control.Channel
	haveCh    bool
	endpoints control.Endpoints
	haveEP    bool
	ice       control.ICEConfig
	haveICE   bool
	clientID  string
	idOK      bool
	storageOn bool                                 // the channel's media storage is ENABLED
	down      map[string]*control.UnreachableError // endpoints found unreachable
}

// checker times one check and records it.
type checker struct {
	d     *run
	c     Check
	start time.Time
}

func (d *run) begin(name, title string) *checker {
	return &checker{d: d, c: Check{Name: name, Title: title}, start: time.Now()}
}

func (k *checker) fact(key string, v any) { k.c.Evidence = append(k.c.Evidence, Fact{key, v}) }

// has reports whether the check has evidence under key.
func (k *checker) has(key string) bool {
	for _, f := range k.c.Evidence {
		if f.Key == key {
			return true
		}
	}
	return false
}

func (k *checker) done(st Status, detail string) Check {
	k.c.Status, k.c.Detail = st, detail
	k.c.Duration = time.Since(k.start)
	k.d.rep.Checks = append(k.d.rep.Checks, k.c)
	k.d.log.Debug("check", "name", k.c.Name, "status", st, "detail", detail, "cause", k.c.Cause)
	if k.d.cfg.OnCheck != nil {
		k.d.cfg.OnCheck(k.c)
	}
	return k.c
}

func (k *checker) pass(detail string) Check { return k.done(StatusPass, detail) }

func (k *checker) skip(detail string) Check { return k.done(StatusSkip, detail) }

// warn records a finding: the check works, but not well enough.
func (k *checker) warn(c cause.Cause, detail, advice string) Check {
	k.c.Cause, k.c.Advice = c, advice
	return k.done(StatusWarn, detail)
}

// fail records a failure with its cause; advice "" takes the cause's.
func (k *checker) fail(c cause.Cause, err error, detail, advice string) Check {
	k.c.Cause, k.c.Err = c, err
	if advice == "" {
		advice = c.Advice()
	}
	k.c.Advice = advice
	if detail == "" && err != nil {
		detail = err.Error()
	}
	return k.done(StatusFail, detail)
}
