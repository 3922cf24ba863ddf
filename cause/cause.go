// Package cause names why a KVS WebRTC viewer did not get (or lost) its
// answer or its media, says what to do about it, and classifies errors into
// causes. It is the one place that maps errors to causes: the viewer, the
// doctor and the web player all use Classify and the wording here.
//
// The package depends on the standard library and kvsrtc's pion-free
// packages only (control, signaling, kvsproto), so that the web player does
// not pull in the WebRTC stack.
//
// Adding a cause means adding a constant and its entry in the table of
// cause.go (advice, and the blog post's reason number if it is one of the
// nine), and a case in Classify if an error shows it; docs/ARCHITECTURE.md
// ("How to add a cause") has the details.
package cause

import (
	"fmt"
	"slices"
)

// Cause names why a viewer did not get (or lost) its answer or media, in
// the terms of the nine reasons listed by the blog post kvsrtc started
// from, plus the ones the service adds.
type Cause string

// Causes.
const (
	None            Cause = ""
	Credentials     Cause = "credentials"       // 1. wrong access key, secret, token or region
	ChannelNotFound Cause = "channel-not-found" // 2. channel name or ARN does not exist (or is being deleted)
	ClientID        Cause = "client-id"         // 3. client id breaks the format rules
	ClientIDReuse   Cause = "client-id-reuse"   // 4. same client id reused; a newer connection took over
	Throttled       Cause = "throttled"         // 5. too many connection attempts or messages
	NetworkChange   Cause = "network-change"    // 6. ICE disconnected/failed while streaming
	BadOffer        Cause = "bad-offer"         // 7. master rejected the offer (STATUS_RESPONSE) or cannot use its codecs
	ChannelFull     Cause = "channel-full"      // 8. the channel's viewer limit is reached
	ICEExpired      Cause = "ice-expired"       // 9. ICE server credentials expired
	NoAnswer        Cause = "no-answer"         // no answer within the timeout (master absent or offer lost)
	MasterGone      Cause = "master-gone"       // media stopped / master left mid-session
	ClockSkew       Cause = "clock-skew"        // client clock too far from the service's
	SignalingLost   Cause = "signaling-lost"    // the signaling socket closed or died
	GoAway          Cause = "go-away"           // the service asked for a reconnect
	NoMedia         Cause = "no-media"          // connected, but no frame arrived in time
	Config          Cause = "config"            // invalid configuration
)

// Causes kvsrtc adds for what real setups run into.
const (
	// Unreachable: the control plane or the signaling endpoint gave no
	// answer at all (DNS, dial, TLS, proxy, timeout); the error is a
	// control.UnreachableError / signaling.UnreachableError naming the
	// endpoint, what failed and the fix.
	Unreachable Cause = "service-unreachable"
	// SlowAnswer: the master answers, but only after the answer timeout
	// (kvsrtc doctor's finding).
	SlowAnswer Cause = "slow-answer"
	// ServiceError: the service answered with an error kvsrtc has no
	// cause for (an HTTP 5xx, an unknown error code, an unusable answer).
	// The name is the one the web player has always used for it.
	ServiceError Cause = "service-unavailable"
)

// Causes of the storage path (WebRTC ingestion and Multiviewer: a viewer
// that joins the channel's storage session instead of asking the master).
const (
	// StorageNotConfigured: the channel has no media storage
	// configuration, so it has no storage session to join.
	StorageNotConfigured Cause = "storage-not-configured"
	// StreamMissing: the stream the channel stores its media in does not
	// exist (it was deleted).
	StreamMissing Cause = "stream-missing"
	// StorageFull: the storage session has its maximum number of viewers.
	StorageFull Cause = "storage-full"
	// NoStorageOffer: the storage session sent no SDP offer within the
	// answer timeout (the session is not ready: the camera has not joined
	// it yet, or the join was lost).
	NoStorageOffer Cause = "no-storage-offer"
)

// info is everything kvsrtc says about a cause.
type info struct {
	// advice is what the user can do about it.
	advice string
	// seed is the number (1-9) of the reason in the blog post's list of
	// reasons an SDP answer never comes, 0 if the post does not list it;
	// seedText is the post's wording.
	seed     int
	seedText string
}

// table is the one list of causes. Every cause but None has an entry.
var table = map[Cause]info{
	Credentials: {
		advice: "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and AWS_REGION: the service rejected the request signature",
		seed:   1, seedText: "wrong AWS access information (region, access key, secret key)",
	},
	ChannelNotFound: {
		advice: "check the channel name or ARN and the region (kvsrtc doctor --channel NAME lists what exists)",
		seed:   2, seedText: "the channel ARN does not exist or is wrong",
	},
	ClientID: {
		advice: "use a client id of 1-256 characters from letters, digits, '-', '_' and '.', not starting with AWS_ (or let kvsrtc generate one)",
		seed:   3, seedText: "the clientId breaks the format rules",
	},
	ClientIDReuse: {
		advice: "another connection with the same client id took over (the service routes to the newest one): give every viewer its own client id; kvsrtc continues with a fresh one",
		seed:   4, seedText: "the same clientId is reused",
	},
	Throttled: {
		advice: "too many connection attempts or messages in a short time: wait a few seconds before retrying (the channel allows 3 connects/s)",
		seed:   5, seedText: "too many connection attempts in a short time",
	},
	NetworkChange: {
		advice: "the network path changed; kvsrtc restarts ICE and reconnects automatically",
		seed:   6, seedText: "the network changed during the connection",
	},
	BadOffer: {
		advice: "the master could not use the offer: check the codecs it supports (--codec) and that audio is only requested when the camera sends it",
		seed:   7, seedText: "a malformed or unanswerable SDP offer",
	},
	ChannelFull: {
		advice: "the channel already has its maximum number of viewers (10): close another viewer or retry with --wait-for-slot",
		seed:   8, seedText: "the channel's maximum number of viewers is exceeded",
	},
	ICEExpired: {
		advice: "the TURN server refused the relay allocation: expired ICE server credentials are fetched again automatically; if this persists the TURN servers are unreachable (allow UDP and TCP 443 to them, or drop --relay)",
		seed:   9, seedText: "an expired ICE server list is used",
	},
	NoAnswer:   {advice: "the master did not answer: check that the camera (master) is connected to this channel and running"},
	MasterGone: {advice: "the camera stopped sending or disconnected; check the master"},
	ClockSkew:  {advice: "set the system clock right (NTP); signatures are only valid within 5 minutes of the service's time"},
	SignalingLost: {
		advice: "the signaling connection was renewed; no action needed unless this repeats",
	},
	GoAway: {advice: "the signaling connection was renewed; no action needed unless this repeats"},
	NoMedia: {
		advice: "the connection was set up but no video arrived: check the master's source and a firewall for UDP (try --relay)",
	},
	Config: {advice: "fix the command-line flags or Config"},
	SlowAnswer: {
		advice: "the master answers, but only after the viewer's answer timeout: raise it above the master's answer time (kvsrtc view --answer-timeout) to connect on the first attempt, and make the camera answer before its ICE gathering ends (trickle ICE)",
	},
	Unreachable: {
		advice: "the service endpoint could not be reached: is `kvsrtc local` running, and does AWS_ENDPOINT_URL_KINESIS_VIDEO (--endpoint-url) point at it? For TLS failures set AWS_CA_BUNDLE to the CA that signed the server's certificate; otherwise check the network, proxy and DNS",
	},
	StorageNotConfigured: {
		advice: "the channel is not configured for media storage (WebRTC ingestion): link it to a stream with `aws kinesisvideo update-media-storage-configuration --channel-arn ARN --media-storage-configuration Status=ENABLED,StreamARN=STREAM_ARN`, or view without --storage",
	},
	StreamMissing: {
		advice: "the stream the channel records into was deleted: create a stream with data retention and link it again with update-media-storage-configuration",
	},
	StorageFull: {
		advice: "the channel's storage session already has its maximum number of viewers: close another viewer (its slot is freed a minute after it leaves) or view directly, without --storage",
	},
	NoStorageOffer: {
		advice: "the storage session sent no offer in time: check that the camera (master) is connected and has joined the storage session (kvsrtc master --ingest), or raise --answer-timeout",
	},
	ServiceError: {
		advice: "the service answered with an error kvsrtc cannot attribute (HTTP 5xx or an unknown error code): retry in a moment; if it persists, check the AWS Health Dashboard or the emulator's log",
	},
}

// All returns every cause but None, in the order of the blog post's nine
// reasons first, then the others by name.
func All() []Cause {
	out := make([]Cause, 0, len(table))
	for n := 1; n <= 9; n++ {
		for c, in := range table {
			if in.seed == n {
				out = append(out, c)
			}
		}
	}
	var rest []Cause
	for c, in := range table {
		if in.seed == 0 {
			rest = append(rest, c)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// Known reports whether c is one of the causes of this package (None is
// not).
func Known(c Cause) bool {
	_, ok := table[c]
	return ok
}

// Parse returns the cause named s, or an error naming the known ones.
func Parse(s string) (Cause, error) {
	if c := Cause(s); Known(c) {
		return c, nil
	}
	return None, fmt.Errorf("cause: unknown cause %q (known: %v)", s, All())
}

// String returns the cause's name.
func (c Cause) String() string { return string(c) }

// Advice returns what the user can do about the cause ("" for None).
func (c Cause) Advice() string { return table[c].advice }

// SeedReason returns the number (1-9) and wording of the cause in the blog
// post's list of reasons the answer does not come, or 0 and "" for a cause
// the post does not list (the master is absent, clock skew, ...).
func (c Cause) SeedReason() (int, string) {
	in := table[c]
	return in.seed, in.seedText
}
