//go:build linux

package go2rtctest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/signaling"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// This file is over 500 lines on purpose: building go2rtc from the module
// proxy, its configuration, its loopback-only namespace and the log it
// leaves on a miss are one harness for its two tests.

// go2rtcVersion is the go2rtc release scripts/deps/go2rtc.sh builds.
const go2rtcVersion = "v1.9.14"

const (
	// connects is the number of connects per client and case.
	connects = 10
	// frameBound is how long one connect may take to its first frame
	// (about 1 s on an idle machine, relay included).
	frameBound = 10 * time.Second
	// slotBound is how long the master may take to free a viewer's slot.
	slotBound = 60 * time.Second
	// connectGap is the least time between two connects: KVS allows 3
	// viewer connects per second and channel (the emulator too), and
	// go2rtc does not retry a refused one.
	connectGap = 400 * time.Millisecond
	// maxRetries is how many go2rtc connects per case may miss their first
	// frame once and be retried.
	maxRetries = 1
)

// pacer spaces connects by connectGap.
type pacer struct{ last time.Time }

func (p *pacer) wait() {
	time.Sleep(time.Until(p.last.Add(connectGap)))
	p.last = time.Now()
}

// go2rtcBinary returns the go2rtc binary, or skips (fails when CI=true)
// when there is none.
func go2rtcBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("KVSRTC_GO2RTC")
	if bin == "" {
		dir := os.Getenv("KVSRTC_CACHE_DIR")
		if dir == "" {
			cache, err := os.UserCacheDir()
			if err != nil {
				t.Fatalf("no cache directory for the go2rtc binary (%v): set KVSRTC_CACHE_DIR or KVSRTC_GO2RTC", err)
			}
			dir = filepath.Join(cache, "kvsrtc")
		}
		bin = filepath.Join(dir, "go2rtc-"+go2rtcVersion)
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("no go2rtc binary at %s (%v): run `bash scripts/deps/go2rtc.sh` (or set KVSRTC_GO2RTC)", bin, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// testLogger writes to the test's output at the level of KVSRTC_TEST_LOG
// (nothing by default).
func testLogger(t testing.TB, side string) *slog.Logger { return kvstest.Logger(t, side) }

// env is an emulator with channel "cam" and a control client for it.
type env struct {
	k   *kvstest.Env
	srv *emulator.Server
	ctl *control.Client
	arn string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	k := kvstest.New(t, kvstest.Options{
		Emulator:      emulator.Config{Channels: []string{"cam"}, Logger: testLogger(t, "emulator")},
		ControlLogger: testLogger(t, "control"),
	})
	return &env{k: k, srv: k.Server, ctl: k.Control, arn: k.ChannelARN(t, "cam")}
}

// mrun is a running master on "cam" with the H.264 test pattern.
type mrun struct {
	m *master.Master

	mu     sync.Mutex
	joined map[string]time.Time // client id -> EventViewerJoined
	why    map[string]error     // client id -> why it left or failed
}

// startMaster runs the master and waits until its signaling connection is
// up; the test's cleanup stops it and reports an error from its Run.
func startMaster(t *testing.T, e *env, policy string) *mrun {
	t.Helper()
	r := &mrun{joined: map[string]time.Time{}, why: map[string]error{}}
	h := e.k.StartMaster(t, kvstest.MasterOptions{Channel: "cam", Logger: testLogger(t, "master"),
		Configure: func(c *master.Config) {
			c.ICETransportPolicy = policy
			c.OnEvent = r.onEvent
		}})
	r.m = h.Master
	return r
}

func (r *mrun) onEvent(ev master.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev.Kind {
	case master.EventViewerJoined:
		r.joined[ev.ClientID] = ev.Time
	case master.EventViewerLeft, master.EventViewerFailed:
		r.why[ev.ClientID] = ev.Err
	}
}

// hasJoined reports whether the viewer's peer connection connected.
func (r *mrun) hasJoined(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.joined[id]
	return ok
}

// reason returns why the viewer left or failed (nil if it did not).
func (r *mrun) reason(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.why[id]
}

// holds reports whether the master has a slot for the viewer.
func (r *mrun) holds(id string) bool {
	return slices.ContainsFunc(r.m.Viewers(), func(v master.ViewerInfo) bool { return v.ClientID == id })
}

// waitFreed waits until the master has no slot for the viewer and returns
// how long that took from since.
func (r *mrun) waitFreed(t *testing.T, id string, since time.Time, bound time.Duration) time.Duration {
	t.Helper()
	waitFor(t, bound, "the master to free "+id+"'s slot", func() bool { return !r.holds(id) })
	return time.Since(since)
}

// waitFor polls cond every 20 ms until it holds, failing after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// iceServer is one ICE server as go2rtc's ice_servers parameter takes it.
type iceServer struct {
	URLs       string `json:"urls"`
	Username   string `json:"username,omitempty"`
	Credential string `json:"credential,omitempty"`
}

// source mints a go2rtc stream source for one connect of a new viewer: the
// channel's VIEWER endpoints and ICE servers, a presigned URL for clientID.
func (e *env) source(ctx context.Context, clientID string) (string, error) {
	ep, err := e.ctl.Endpoints(ctx, e.arn, kvsproto.RoleViewer)
	if err != nil {
		return "", err
	}
	ice, err := e.ctl.ICEServers(ctx, e.arn, ep.HTTPS, clientID)
	if err != nil {
		return "", err
	}
	// go2rtc v1.9.14 ignores a server whose urls is a list.
	var servers []iceServer
	for _, s := range ice.Servers {
		for _, u := range s.URLs {
			servers = append(servers, iceServer{URLs: u, Username: s.Username, Credential: s.Credential})
		}
	}
	iceJSON, err := json.Marshal(servers)
	if err != nil {
		return "", err
	}
	wss, err := signaling.PresignURL(ctx, signaling.Config{
		Endpoint: ep.WSS, ChannelARN: e.arn, Role: kvsproto.RoleViewer, ClientID: clientID,
		Region: e.ctl.Region(), Credentials: e.ctl.SigV4Credentials, Now: e.ctl.Now,
	})
	if err != nil {
		return "", err
	}
	return "webrtc:" + string(wss) + "#format=kinesis#client_id=" + clientID + "#ice_servers=" + string(iceJSON), nil
}

// g2r is a running go2rtc process.
type g2r struct {
	cmd  *exec.Cmd
	api  string // http://127.0.0.1:port
	out  *testutil.Buffer
	done chan struct{}
}

// go2rtcConfig is go2rtc's configuration: the HTTP API on loopback, no other
// listener, only the modules the tests use.
const go2rtcConfig = `app:
  modules: [api, ws, webrtc, mp4]
api:
  listen: "127.0.0.1:%d"
rtsp:
  listen: ""
srtp:
  listen: ""
webrtc:
  listen: ""
  ice_servers: []
log:
  output: stdout
  format: text
  time: UNIXMS
  level: %s
`

func startGo2rtc(t *testing.T, bin string) *g2r {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	level := os.Getenv("KVSRTC_GO2RTC_LOG")
	if level == "" {
		level = "debug" // printed only when a test fails
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "go2rtc.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, go2rtcConfig, port, level), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &g2r{api: fmt.Sprintf("http://127.0.0.1:%d", port), out: &testutil.Buffer{}, done: make(chan struct{})}
	g.cmd = exec.Command(bin, "-config", cfg)
	g.cmd.Dir = dir
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start go2rtc: %v", err)
	}
	go func() {
		defer close(g.done)
		_ = g.cmd.Wait()
	}()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("go2rtc's log:\n%s", g.out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(g.api + "/api")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g
			}
		}
		select {
		case <-g.done:
			t.Fatalf("go2rtc exited (%v) before its API answered", g.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("go2rtc's API at %s did not answer within 20 s: %v", g.api, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends go2rtc (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (g *g2r) stop() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(5 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// kill ends go2rtc with SIGKILL (no goodbye to its peers) and waits for it.
func (g *g2r) kill() {
	_ = g.cmd.Process.Kill()
	<-g.done
}

// play opens go2rtc's WebSocket API (/api/ws) on a new stream named name
// with source src, asks for fragmented MP4 ("mse", as go2rtc's web player
// does), sends the arrival time of the first frame (the first mdat box) on
// first and reads on until ctx ends, as a player would. It returns nil when
// ctx ends after the first frame.
//
// The WebSocket, not /api/stream.mp4: go2rtc v1.9.14 can write to the HTTP
// response of /api/stream.mp4 after its handler returned when the client
// leaves while frames flow, and then crashes (nil pointer dereference in
// bufio.(*Writer).Flush from core.(*WriteBuffer).Write; known upstream,
// https://github.com/AlexxIT/go2rtc/issues/1757).
func (g *g2r) play(ctx context.Context, name, src string, first chan<- time.Time) error {
	q := url.Values{"src": {src}, "name": {name}}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(g.api, "http")+"/api/ws?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("dial go2rtc's /api/ws: %w", err)
	}
	defer c.CloseNow()
	c.SetReadLimit(64 << 20)
	if err := wsjson.Write(ctx, c, map[string]string{"type": "mse", "value": ""}); err != nil {
		return err
	}
	var (
		buf  []byte
		seen bool
	)
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			if seen && ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read go2rtc's /api/ws: %w", err)
		}
		if typ == websocket.MessageText {
			var msg struct {
				Type  string `json:"type"`
				Value any    `json:"value"`
			}
			if err := json.Unmarshal(data, &msg); err == nil && msg.Type == "error" {
				return fmt.Errorf("go2rtc: %v", msg.Value)
			}
			continue
		}
		if seen {
			continue
		}
		buf = append(buf, data...)
		found, n, err := scanMdat(buf)
		if err != nil {
			return err
		}
		buf = buf[n:]
		if found {
			seen = true
			first <- time.Now()
		}
	}
}

// scanMdat looks for a non-empty mdat box in b, a piece of an ISO BMFF
// stream that starts at a box boundary. It returns whether one starts in b
// and how many bytes of whole boxes before it may be dropped.
func scanMdat(b []byte) (found bool, consumed int, err error) {
	for {
		rest := b[consumed:]
		if len(rest) < 8 {
			return false, consumed, nil
		}
		size := uint64(binary.BigEndian.Uint32(rest[:4]))
		typ := string(rest[4:8])
		head := uint64(8)
		if size == 1 {
			if len(rest) < 16 {
				return false, consumed, nil
			}
			size, head = binary.BigEndian.Uint64(rest[8:16]), 16
		}
		if typ == "mdat" && (size == 0 || size > head) {
			return true, consumed, nil
		}
		if size < head {
			return false, consumed, fmt.Errorf("bad MP4 box %q of size %d", typ, size)
		}
		if uint64(len(rest)) < size {
			return false, consumed, nil
		}
		consumed += int(size)
	}
}

// result is one connect.
type result struct {
	ttff      time.Duration // 0: no first frame
	connected bool          // the master saw the peer connection connect
	err       error
}

// connectGo2rtc makes one go2rtc connect with a fresh client id and measures
// the time from minting its URL to its first frame; then it stops the
// consumer and waits for the master to free the slot.
func connectGo2rtc(t *testing.T, e *env, m *mrun, g *g2r, i int) result {
	t.Helper()
	id := fmt.Sprintf("go2rtc-%d-%d", i, time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(t.Context(), frameBound)
	defer cancel()
	start := time.Now()
	src, err := e.source(ctx, id)
	if err != nil {
		t.Fatalf("mint the go2rtc source: %v", err)
	}
	first := make(chan time.Time, 1)
	errc := make(chan error, 1)
	go func() { errc <- g.play(ctx, fmt.Sprintf("kvs%d-%d", i, start.UnixNano()), src, first) }()
	var r result
	select {
	case at := <-first:
		r.ttff = at.Sub(start)
	case err := <-errc:
		r.err = err
		errc <- err
	case <-ctx.Done():
		r.err = fmt.Errorf("no first frame within %v", frameBound)
	}
	stopped := time.Now()
	cancel()
	<-errc
	freed := m.waitFreed(t, id, stopped, slotBound)
	r.connected = m.hasJoined(id)
	t.Logf("go2rtc connect %d (%s): first frame %s, connected %v, slot freed %v after the consumer left",
		i+1, id, fmtDur(r.ttff, r.err), r.connected, freed.Round(time.Millisecond))
	return r
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fmtDur(d time.Duration, err error) string {
	if err != nil {
		msg := err.Error()
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return "none (" + msg + ")"
	}
	return d.Round(time.Millisecond).String()
}

// connectKvsrtc makes one connect of kvsrtc's own viewer with a fresh client
// id and measures the time from Run to its first frame (Run resolves the
// channel, fetches the endpoints and ICE servers and presigns, as the test
// does for go2rtc); then it stops the viewer and waits for the master to
// free the slot.
func connectKvsrtc(t *testing.T, e *env, m *mrun, i int, forceRelay bool) result {
	t.Helper()
	id := fmt.Sprintf("kvsrtc-%d-%d", i, time.Now().UnixNano())
	s, err := viewer.New(viewer.Config{
		Channel: "cam", Control: e.ctl, ClientID: id, LoopbackOnly: true, ForceRelay: forceRelay,
		Logger: testLogger(t, "viewer"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Run(ctx) }()
	var r result
	deadline := start.Add(frameBound)
wait:
	for {
		if ff := s.Stats().FirstFrame; !ff.IsZero() {
			r.ttff = ff.Sub(start)
			break
		}
		select {
		case err := <-done:
			r.err = fmt.Errorf("the viewer ended before a frame: %w", err)
			done <- err
			break wait
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.err = fmt.Errorf("no first frame within %v", frameBound)
			break
		}
	}
	stopped := time.Now()
	cancel()
	<-done
	freed := m.waitFreed(t, id, stopped, slotBound)
	r.connected = m.hasJoined(id)
	t.Logf("kvsrtc connect %d (%s, relay %v): first frame %s, connected %v, slot freed %v after the viewer stopped",
		i+1, id, forceRelay, fmtDur(r.ttff, r.err), r.connected, freed.Round(time.Millisecond))
	return r
}

// tally sums up connects: how many reached a first frame, how many
// connected, and the median time to first frame of the successful ones.
type tally struct {
	n, frames, connected int
	median, lo, hi       time.Duration
}

func sum(rs []result) tally {
	var tl tally
	var ds []time.Duration
	tl.n = len(rs)
	for _, r := range rs {
		if r.connected {
			tl.connected++
		}
		if r.err == nil {
			ds = append(ds, r.ttff)
		}
	}
	tl.frames = len(ds)
	if len(ds) > 0 {
		slices.Sort(ds)
		tl.median, tl.lo, tl.hi = ds[len(ds)/2], ds[0], ds[len(ds)-1]
		if len(ds)%2 == 0 {
			tl.median = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
		}
	}
	return tl
}

func (tl tally) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("first frame %d/%d (connected %d/%d), median %v (min %v, max %v)",
		tl.frames, tl.n, tl.connected, tl.n, r(tl.median), r(tl.lo), r(tl.hi))
}

// TestGo2rtcViewer: go2rtc, as a KVS viewer of a kvsrtc master, reaches a
// first frame on every connect, directly and through TURN (one connect per
// case that misses may be retried once, logged with go2rtc's log: on a
// loaded 2-core CI machine go2rtc's own ICE acceptance waits rarely push a
// connect past the bound); kvsrtc's viewer is measured against the same
// master for comparison, with no retry.
func TestGo2rtcViewer(t *testing.T) {
	bin := go2rtcBinary(t)
	logNetwork(t)
	for _, tc := range []struct{ name, policy string }{
		{"host", master.ICEPolicyAll},
		{"relay", master.ICEPolicyRelay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := startMaster(t, e, tc.policy)
			g := startGo2rtc(t, bin)

			var gr, kr, kf []result
			var p pacer
			retried := 0
			for i := range connects {
				p.wait()
				r := connectGo2rtc(t, e, m, g, i)
				if r.err != nil && retried < maxRetries {
					// A rare miss under a loaded machine is go2rtc's own
					// timing (its pion ICE acceptance waits and its
					// consumer attaching after the GOP burst); one is
					// retried and reported, a second one fails the test.
					retried++
					t.Logf("go2rtc connect %d missed (%v); retrying it once. go2rtc's log so far (tail):\n%s",
						i+1, r.err, tail(g.out.String(), 60))
					p.wait()
					r = connectGo2rtc(t, e, m, g, i)
				}
				gr = append(gr, r)
			}
			for i := range connects {
				p.wait()
				kr = append(kr, connectKvsrtc(t, e, m, i, false))
			}
			if tc.policy == master.ICEPolicyRelay {
				for i := range connects {
					p.wait()
					kf = append(kf, connectKvsrtc(t, e, m, i, true))
				}
			}

			gt, kt := sum(gr), sum(kr)
			t.Logf("SUMMARY %s (master ICE policy %q): go2rtc %s, %d connect(s) retried", tc.name, tc.policy, gt, retried)
			t.Logf("SUMMARY %s (master ICE policy %q): kvsrtc view %s", tc.name, tc.policy, kt)
			if kf != nil {
				t.Logf("SUMMARY %s (master ICE policy %q): kvsrtc view --relay %s", tc.name, tc.policy, sum(kf))
			}
			if gt.frames < connects {
				t.Errorf("go2rtc reached a first frame in %d of %d connects (%d connected): "+
					"go2rtc binds its consumer to the first payload type of the answer's video section, "+
					"so the master's answer must list the payload type it sends first (issue 9, item 4)",
					gt.frames, connects, gt.connected)
			}
			if kt.frames < connects {
				t.Errorf("kvsrtc's viewer reached a first frame in %d of %d connects", kt.frames, connects)
			}
			if kf != nil && sum(kf).frames < connects {
				t.Errorf("kvsrtc's relay-only viewer reached a first frame in %d of %d connects", sum(kf).frames, connects)
			}
		})
	}
}

// TestGo2rtcKilledSlotFreed: a go2rtc killed while connected (no DTLS
// close, no goodbye) gives its viewer slot on the master back within a
// generous bound; the time is logged.
func TestGo2rtcKilledSlotFreed(t *testing.T) {
	bin := go2rtcBinary(t)
	logNetwork(t)
	e := newEnv(t)
	m := startMaster(t, e, master.ICEPolicyAll)
	g := startGo2rtc(t, bin)

	id := fmt.Sprintf("go2rtc-killed-%d", time.Now().UnixNano())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	src, err := e.source(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- g.play(ctx, "killed", src, make(chan time.Time, 1)) }()
	// Connected is enough: whether frames flow does not change what the
	// master has to notice.
	waitFor(t, frameBound, "go2rtc's peer connection to the master", func() bool { return m.hasJoined(id) })
	killed := time.Now()
	g.kill()
	<-errc
	freed := m.waitFreed(t, id, killed, slotBound)
	t.Logf("SUMMARY killed go2rtc: the master freed its slot %v after SIGKILL (%v)", freed.Round(time.Millisecond), m.reason(id))
}
