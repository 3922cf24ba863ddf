package emulator

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator/internal/hub"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Fault is one fault to inject (see ParseFault for the text form). Channel
// is a channel name or ARN ("" = every channel); Target selects connections
// ("master", "viewer", a client id, or "" for all), or for FaultThrottleAPI
// an operation name ("" = every operation).
type Fault = hub.Fault

// FaultKind names a fault.
type FaultKind = hub.FaultKind

// Fault kinds. The first group acts on WebSocket connections and messages;
// the last three act on the service itself.
const (
	// FaultDrop drops the next Count messages of Action (any action when
	// empty) sent on Channel by Target.
	FaultDrop = hub.FaultDrop
	// FaultDelay delays the next Count such messages by Delay.
	FaultDelay = hub.FaultDelay
	// FaultGoAway sends GO_AWAY to the matching connections and closes them
	// after Grace (default 60 s).
	FaultGoAway = hub.FaultGoAway
	// FaultReconnectICE sends RECONNECT_ICE_SERVER to the matching
	// connections.
	FaultReconnectICE = hub.FaultReconnectICE
	// FaultClose drops the matching connections without a close frame.
	FaultClose = hub.FaultClose
	// FaultRefuseThrottle refuses the next Count connects on Channel with
	// 400 ClientLimitExceededException, as if over 3 connects/s.
	FaultRefuseThrottle = hub.FaultRefuseThrottle
	// FaultRefuseFull refuses the next Count viewer connects as over the
	// viewer limit.
	FaultRefuseFull = hub.FaultRefuseFull
	// FaultExpireTURN invalidates every TURN credential issued so far.
	FaultExpireTURN FaultKind = "expire-turn"
	// FaultSkewClock sets the service clock skew to Delay (may be negative;
	// 0 resets it). The skew applies to signature checks, the Date header,
	// CreationTime, TURN credential expiry and message TTLs.
	FaultSkewClock FaultKind = "skew"
	// FaultThrottleAPI answers the next Count REST calls (of operation
	// Target, e.g. "DescribeSignalingChannel"; all when empty) with 400
	// ClientLimitExceededException.
	FaultThrottleAPI FaultKind = "throttle-api"
)

// ErrInvalidFault is matched (errors.Is) by the errors of ParseFault and
// Inject for a fault that cannot be applied; the message says what to fix.
var ErrInvalidFault = errors.New("emulator: invalid fault")

func faultErr(spec, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidFault, spec, fmt.Sprintf(format, args...))
}

// faultKeys lists, per kind, the keys ParseFault accepts.
var faultKeys = map[FaultKind][]string{
	FaultDrop:           {"channel", "action", "count", "target"},
	FaultDelay:          {"channel", "action", "count", "target", "delay"},
	FaultGoAway:         {"channel", "target", "grace"},
	FaultReconnectICE:   {"channel", "target"},
	FaultClose:          {"channel", "target"},
	FaultRefuseThrottle: {"channel", "count", "target"},
	FaultRefuseFull:     {"channel", "count", "target"},
	FaultExpireTURN:     {},
	FaultSkewClock:      {"by"},
	FaultThrottleAPI:    {"count", "target"},
}

func faultKindNames() string {
	names := make([]string, 0, len(faultKeys))
	for k := range faultKeys {
		names = append(names, string(k))
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// ParseFault parses the --fault syntax: a kind, then comma-separated
// key=value pairs. Kinds and their keys:
//
//	drop          channel, action, count, target   e.g. drop,action=SDP_ANSWER,count=1,channel=demo
//	delay         channel, action, count, target, delay   e.g. delay,action=ICE_CANDIDATE,delay=2s,count=5
//	goaway        channel, target, grace           e.g. goaway,channel=demo,target=master,grace=5s
//	reconnect-ice channel, target
//	close         channel, target                  (abrupt: no close frame)
//	throttle      channel, count, target           (refuse connects as over 3/s)
//	full          channel, count, target           (refuse viewer connects as over the viewer limit)
//	expire-turn                                    (invalidate all TURN credentials)
//	skew          by                               e.g. skew,by=-10m
//	throttle-api  count, target                    e.g. throttle-api,target=DescribeSignalingChannel
//
// action accepts SDP_OFFER, SDP_ANSWER, ICE_CANDIDATE (or offer, answer,
// ice); count defaults to 1; durations use Go syntax (1.5s, 2m).
func ParseFault(spec string) (Fault, error) {
	var f Fault
	parts := strings.Split(strings.TrimSpace(spec), ",")
	kind := FaultKind(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(parts[0])), "_", "-"))
	switch kind {
	case "go-away":
		kind = FaultGoAway
	case "reconnect-ice-server":
		kind = FaultReconnectICE
	}
	keys, ok := faultKeys[kind]
	if !ok {
		if kind == "" {
			return f, faultErr(spec, "empty; start with a kind (%s)", faultKindNames())
		}
		return f, faultErr(spec, "unknown kind %q; use one of %s", kind, faultKindNames())
	}
	f.Kind = kind
	seen := map[string]bool{}
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			return f, faultErr(spec, "%q is not key=value", p)
		}
		if !contains(keys, k) {
			if len(keys) == 0 {
				return f, faultErr(spec, "%s takes no keys", kind)
			}
			return f, faultErr(spec, "key %q does not apply to %s; it takes %s", k, kind, strings.Join(keys, ", "))
		}
		if seen[k] {
			return f, faultErr(spec, "key %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "channel":
			f.Channel = v
		case "target":
			f.Target = v
		case "action":
			a, err := parseFaultAction(v)
			if err != nil {
				return f, faultErr(spec, "%v", err)
			}
			f.Action = a
		case "count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return f, faultErr(spec, "count %q must be a positive integer", v)
			}
			f.Count = n
		case "delay", "grace", "by":
			d, err := time.ParseDuration(v)
			if err != nil {
				return f, faultErr(spec, "%s %q is not a duration like 1.5s or 2m", k, v)
			}
			if k != "by" && d <= 0 {
				return f, faultErr(spec, "%s must be positive", k)
			}
			if k == "grace" {
				f.Grace = d
			} else {
				f.Delay = d
			}
		}
	}
	if err := checkFault(f); err != nil {
		return f, faultErr(spec, "%v", err)
	}
	return f, nil
}

// checkFault validates a Fault built in code (Inject) or parsed.
func checkFault(f Fault) error {
	if _, ok := faultKeys[f.Kind]; !ok {
		return fmt.Errorf("unknown kind %q; use one of %s", f.Kind, faultKindNames())
	}
	if f.Count < 0 {
		return errors.New("count must not be negative")
	}
	switch f.Kind {
	case FaultDelay:
		if f.Delay <= 0 {
			return errors.New("delay needs delay=DURATION")
		}
	case FaultSkewClock:
		if f.Delay > 365*24*time.Hour || f.Delay < -365*24*time.Hour {
			return errors.New("skew must be within a year")
		}
	case FaultThrottleAPI:
		if f.Target != "" && !knownOperation(f.Target) {
			return fmt.Errorf("target %q is not an operation name like DescribeSignalingChannel or GetIceServerConfig", f.Target)
		}
	}
	if f.Action != "" {
		if _, err := kvsproto.ParseAction(string(f.Action)); err != nil {
			return err
		}
	}
	return nil
}

func parseFaultAction(v string) (kvsproto.Action, error) {
	switch strings.ToLower(v) {
	case "offer", "sdp_offer", "sdp-offer":
		return kvsproto.ActionSDPOffer, nil
	case "answer", "sdp_answer", "sdp-answer":
		return kvsproto.ActionSDPAnswer, nil
	case "ice", "candidate", "ice_candidate", "ice-candidate":
		return kvsproto.ActionICECandidate, nil
	}
	return "", fmt.Errorf("action %q must be SDP_OFFER, SDP_ANSWER or ICE_CANDIDATE", v)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// apiThrottle holds armed throttle-api faults.
type apiThrottle struct {
	mu    sync.Mutex
	armed []*Fault
}

func (a *apiThrottle) arm(f Fault) {
	if f.Count == 0 {
		f.Count = 1
	}
	a.mu.Lock()
	a.armed = append(a.armed, &f)
	a.mu.Unlock()
}

// take reports whether a call of op is to be throttled, consuming one count.
func (a *apiThrottle) take(op string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, f := range a.armed {
		if f.Target == "" || f.Target == op {
			f.Count--
			if f.Count <= 0 {
				a.armed = append(a.armed[:i], a.armed[i+1:]...)
			}
			return true
		}
	}
	return false
}
