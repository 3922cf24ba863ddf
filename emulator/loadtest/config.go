package loadtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// ErrConfig is matched by errors for an unusable Config.
var ErrConfig = errors.New("loadtest: invalid config")

// Config describes one load run. Zero fields get the defaults noted.
type Config struct {
	// Endpoint is the control-plane URL of the service (required).
	Endpoint string
	// AdminToken is the emulator's admin token (emulator.Server.AdminToken,
	// $KVSRTC_ADMIN_TOKEN), for the server figures from /_kvsrtc/stats;
	// without it the result has none.
	AdminToken string
	// Region is the signing region; default "us-west-2".
	Region string
	// Credentials sign every request; default the AWS documentation
	// example pair (the emulator's default).
	Credentials sigv4.Credentials
	// Channels is the number of channels; default 10.
	Channels int
	// ViewersPerChannel is the number of viewers per channel (each channel
	// also gets one master); default 10.
	ViewersPerChannel int
	// ChannelPrefix names the channels PREFIX-0001...; default
	// "loadtest-<random>".
	ChannelPrefix string
	// ConnectConcurrency bounds concurrent REST calls and WebSocket
	// handshakes; default 64.
	ConnectConcurrency int
	// ConnectsPerChannel, when positive, paces the viewer connects of each
	// channel to that many per second (KVS allows 3 per second per channel
	// and role); 0 connects as fast as ConnectConcurrency allows.
	ConnectsPerChannel int
	// Rate is the number of messages per second all viewers together send
	// to their masters; every master echoes each one back, so about twice
	// as many messages are routed. Default 1000.
	Rate float64
	// Duration is how long messages are sent; default 10 s.
	Duration time.Duration
	// PayloadBytes is the approximate size of each messagePayload (an ICE
	// candidate JSON, base64); default 200.
	PayloadBytes int
	// HTTPClient is used for REST calls and WebSocket handshakes (set its
	// TLS RootCAs for a wss service); default a plain client.
	HTTPClient *http.Client
	// KeepChannels leaves the channels in place after the run.
	KeepChannels bool
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// ServerStats are the emulator's process figures from GET /_kvsrtc/stats
// (absent for other services).
type ServerStats struct {
	Connections int   `json:"connections"`
	Goroutines  int   `json:"goroutines"`
	RSSBytes    int64 `json:"rssBytes"`
	HeapBytes   int64 `json:"heapBytes"`
}

// Result is what a run measured.
type Result struct {
	Connections   int           // WebSockets open after the connect phase
	ConnectErrors int           // failed connects
	ConnectTime   time.Duration // time to open all WebSockets
	ConnectRate   float64       // WebSockets opened per second
	Sent          uint64        // messages sent by viewers and masters
	Received      uint64        // messages received
	Lost          uint64        // sent but not received by the end of the drain
	SendDuration  time.Duration
	Throughput    float64 // messages received per second of SendDuration
	P50, P90, P99 time.Duration
	P999, Max     time.Duration
	// SecondP99 is the p99 latency of each second of the send phase (it
	// shows whether the tail is spread out or comes from a few stalls).
	SecondP99 []time.Duration
	// Server figures (nil when the service has no /_kvsrtc/stats): before
	// connecting, with every connection open, and after the message phase.
	ServerIdle, ServerConnected, ServerAfter *ServerStats
	// BytesPerConn is (RSS connected - RSS idle) / Connections; 0 without
	// server figures.
	BytesPerConn float64
}

// String renders the result as a small report.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections:   %d open, %d failed, in %v (%.0f/s)\n", r.Connections, r.ConnectErrors, r.ConnectTime.Round(time.Millisecond), r.ConnectRate)
	fmt.Fprintf(&b, "messages:      %d sent, %d received, %d lost in %v\n", r.Sent, r.Received, r.Lost, r.SendDuration.Round(time.Millisecond))
	fmt.Fprintf(&b, "throughput:    %.0f messages/s routed\n", r.Throughput)
	fmt.Fprintf(&b, "latency:       p50 %v, p90 %v, p99 %v, p99.9 %v, max %v\n", r.P50, r.P90, r.P99, r.P999, r.Max)
	if len(r.SecondP99) > 0 {
		b.WriteString("p99 by second:")
		for _, d := range r.SecondP99 {
			fmt.Fprintf(&b, " %.1f", float64(d.Microseconds())/1000)
		}
		b.WriteString(" ms\n")
	}
	if r.ServerConnected != nil {
		fmt.Fprintf(&b, "service:       RSS %.1f MiB idle, %.1f MiB with %d connections (%.1f KiB/connection), %d goroutines\n",
			mib(r.ServerIdle.RSSBytes), mib(r.ServerConnected.RSSBytes), r.ServerConnected.Connections, r.BytesPerConn/1024, r.ServerConnected.Goroutines)
	}
	if r.ServerAfter != nil {
		fmt.Fprintf(&b, "after load:    RSS %.1f MiB, heap %.1f MiB, %d goroutines\n", mib(r.ServerAfter.RSSBytes), mib(r.ServerAfter.HeapBytes), r.ServerAfter.Goroutines)
	}
	return b.String()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func (c *Config) defaults() error {
	if c.Endpoint == "" {
		return fmt.Errorf("%w: Endpoint is required (the service URL)", ErrConfig)
	}
	c.Endpoint = strings.TrimRight(c.Endpoint, "/")
	if c.Region == "" {
		c.Region = "us-west-2"
	}
	if c.Credentials.AccessKeyID == "" {
		c.Credentials = sigv4.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	}
	if c.Channels == 0 {
		c.Channels = 10
	}
	if c.ViewersPerChannel == 0 {
		c.ViewersPerChannel = 10
	}
	if c.Channels < 0 || c.ViewersPerChannel < 0 || c.Rate < 0 || c.Duration < 0 {
		return fmt.Errorf("%w: negative Channels, ViewersPerChannel, Rate or Duration", ErrConfig)
	}
	if c.ChannelPrefix == "" {
		c.ChannelPrefix = "loadtest-" + strings.ToLower(rand.Text()[:8])
	}
	if err := kvsproto.ValidateChannelName(c.ChannelPrefix); err != nil {
		return fmt.Errorf("%w: ChannelPrefix: %v", ErrConfig, err)
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 64
	}
	if c.Rate == 0 {
		c.Rate = 1000
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.PayloadBytes <= 0 {
		c.PayloadBytes = 200
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}
