package player

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/internal/buildinfo"
)

// ttffBuckets are the upper bounds (seconds) of the time-to-first-frame
// histogram.
var ttffBuckets = []float64{0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30}

// metrics holds the counters /metrics exposes, in the Prometheus text
// exposition format (version 0.0.4), written by hand.
type metrics struct {
	mu           sync.Mutex
	sessions     map[string]float64 // by channel: sessions minted (connection attempts)
	renewals     map[string]float64 // by channel: signaling renewals
	relayed      map[string]float64 // by channel: sessions sent to the relay
	failures     map[string]float64 // by cause: failed attempts and refused requests
	giveUps      map[string]float64 // by cause: pages that gave up
	reconnects   map[string]float64 // by cause: recoveries while playing
	firstFrames  map[string]float64 // by channel
	authFailures float64
	rateLimited  float64
	ttffCounts   []float64 // per bucket, not cumulative
	ttffSum      float64
	ttffCount    float64
	refreshErrs  float64

	// The storage path (storage.go).
	storageSessions     map[string]float64 // by channel: attempts that joined the storage session
	storageJoinFailures map[string]float64 // by cause: refused JoinStorageSessionAsViewer calls
}

func newMetrics() *metrics {
	return &metrics{
		sessions: map[string]float64{}, renewals: map[string]float64{}, relayed: map[string]float64{}, failures: map[string]float64{},
		giveUps: map[string]float64{}, reconnects: map[string]float64{}, firstFrames: map[string]float64{},
		storageSessions: map[string]float64{}, storageJoinFailures: map[string]float64{},
		ttffCounts: make([]float64, len(ttffBuckets)),
	}
}

func (m *metrics) inc(mp map[string]float64, key string) {
	m.mu.Lock()
	mp[key]++
	m.mu.Unlock()
}

func (m *metrics) incAuthFailure() {
	m.mu.Lock()
	m.authFailures++
	m.mu.Unlock()
}

func (m *metrics) incRateLimited() {
	m.mu.Lock()
	m.rateLimited++
	m.failures["throttled"]++
	m.mu.Unlock()
}

func (m *metrics) incRefreshError() {
	m.mu.Lock()
	m.refreshErrs++
	m.mu.Unlock()
}

func (m *metrics) observeTTFF(channel string, d time.Duration) {
	s := d.Seconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.firstFrames[channel]++
	m.ttffSum += s
	m.ttffCount++
	for i, b := range ttffBuckets {
		if s <= b {
			m.ttffCounts[i]++
			break
		}
	}
}

// write writes every metric in the text exposition format.
func (m *metrics) write(w io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	family := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	labeled := func(name, typ, help, label string, mp map[string]float64) {
		family(name, typ, help)
		for _, k := range slices.Sorted(maps.Keys(mp)) {
			fmt.Fprintf(&b, "%s{%s=\"%s\"} %s\n", name, label, escapeLabel(k), num(mp[k]))
		}
	}
	labeled("kvsrtc_player_sessions_total", "counter", "Sessions minted for browsers (one per connection attempt), by channel.", "channel", m.sessions)
	labeled("kvsrtc_player_renewals_total", "counter", "Signaling URLs renewed for a playing browser (same client id), by channel.", "channel", m.renewals)
	labeled("kvsrtc_player_relay_sessions_total", "counter", "Browsers sent to the relay (WHEP) instead of a direct session, by channel.", "channel", m.relayed)
	labeled("kvsrtc_player_failures_total", "counter", "Failed connection attempts and refused session requests, by cause.", "cause", m.failures)
	labeled("kvsrtc_player_give_ups_total", "counter", "Pages that gave up and showed a diagnosis, by cause.", "cause", m.giveUps)
	labeled("kvsrtc_player_reconnects_total", "counter", "Reconnects of a playing page (ICE restart or new session), by cause.", "cause", m.reconnects)
	labeled("kvsrtc_player_first_frames_total", "counter", "Pages that decoded a first frame, by channel.", "channel", m.firstFrames)
	labeled("kvsrtc_player_storage_sessions_total", "counter", "Connection attempts that joined the channel's storage session (Multiviewer), by channel.", "channel", m.storageSessions)
	labeled("kvsrtc_player_storage_join_failures_total", "counter", "JoinStorageSessionAsViewer calls that failed, by cause.", "cause", m.storageJoinFailures)
	family("kvsrtc_player_auth_failures_total", "counter", "Requests refused for a missing or wrong token.")
	fmt.Fprintf(&b, "kvsrtc_player_auth_failures_total %s\n", num(m.authFailures))
	family("kvsrtc_player_rate_limited_total", "counter", "Session requests refused by the per-client rate limit.")
	fmt.Fprintf(&b, "kvsrtc_player_rate_limited_total %s\n", num(m.rateLimited))
	family("kvsrtc_player_refresh_errors_total", "counter", "Background refreshes of channels, endpoints or ICE servers that failed.")
	fmt.Fprintf(&b, "kvsrtc_player_refresh_errors_total %s\n", num(m.refreshErrs))
	family("kvsrtc_player_time_to_first_frame_seconds", "histogram", "Time from page start to the first decoded video frame, as the page measured it.")
	var cum float64
	for i, le := range ttffBuckets {
		cum += m.ttffCounts[i]
		fmt.Fprintf(&b, "kvsrtc_player_time_to_first_frame_seconds_bucket{le=\"%s\"} %s\n", num(le), num(cum))
	}
	fmt.Fprintf(&b, "kvsrtc_player_time_to_first_frame_seconds_bucket{le=\"+Inf\"} %s\n", num(m.ttffCount))
	fmt.Fprintf(&b, "kvsrtc_player_time_to_first_frame_seconds_sum %s\n", num(m.ttffSum))
	fmt.Fprintf(&b, "kvsrtc_player_time_to_first_frame_seconds_count %s\n", num(m.ttffCount))
	bi := buildinfo.Get()
	family("kvsrtc_build_info", "gauge", "Always 1; the labels name the kvsrtc build and its pion/webrtc and AWS SDK versions.")
	fmt.Fprintf(&b, "kvsrtc_build_info{version=\"%s\",revision=\"%s\",goversion=\"%s\",pion_webrtc=\"%s\",aws_sdk_go_v2=\"%s\"} 1\n",
		escapeLabel(bi.Version), escapeLabel(bi.Revision), escapeLabel(bi.GoVersion), escapeLabel(bi.Pion), escapeLabel(bi.AWSSDK))
	_, err := io.WriteString(w, b.String())
	return err
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// escapeLabel escapes a label value as the exposition format requires.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
