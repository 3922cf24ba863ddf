package aiortc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/signaling"
	"github.com/kvsrtc/kvsrtc/viewer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// python is Debian's interpreter, the one python3-aiortc installs into (a
// python3 earlier on PATH, e.g. pyenv's, does not see Debian's packages).
const python = "/usr/bin/python3"

// installHint is what to do when aiortc is missing.
const installHint = "install it with: bash scripts/deps/aiortc.sh (Debian python3-aiortc and python3-websockets)"

// requireAiortc skips the test when /usr/bin/python3 cannot import aiortc
// and websockets, or fails it when CI is set: CI must run the interop tests.
func requireAiortc(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import aiortc, aioice, websockets, av, numpy").CombinedOutput()
	if err == nil {
		return
	}
	msg := fmt.Sprintf("aiortc is not usable with %s (%v: %s); %s", python, err, strings.TrimSpace(string(out)), installHint)
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// testLogger writes to the test's output at the level of KVSRTC_TEST_LOG
// (nothing by default).
func testLogger(t testing.TB, side string) *slog.Logger { return kvstest.Logger(t, side) }

// env is a local KVS service with channel "cam" and a control client.
type env struct {
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
	return &env{srv: k.Server, ctl: k.Control, arn: k.ChannelARN(t, "cam")}
}

// iceServer is an ICE server as kvs_master.py reads it (RTCIceServer).
type iceServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// masterSetup presigns the master's WSS URL and fetches the channel's ICE
// servers, as a camera does before it connects.
func (e *env) masterSetup(t *testing.T) (signaling.PresignedURL, []iceServer) {
	t.Helper()
	ctx := t.Context()
	ep, err := e.ctl.Endpoints(ctx, e.arn, kvsproto.RoleMaster)
	if err != nil {
		t.Fatal(err)
	}
	u, err := signaling.PresignURL(ctx, signaling.Config{
		Endpoint: ep.WSS, ChannelARN: e.arn, Role: kvsproto.RoleMaster, Region: e.ctl.Region(),
		Credentials: e.ctl.SigV4Credentials, Now: e.ctl.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ice, err := e.ctl.ICEServers(ctx, e.arn, ep.HTTPS, "")
	if err != nil {
		t.Fatal(err)
	}
	var servers []iceServer
	for _, s := range ice.Servers {
		servers = append(servers, iceServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return u, servers
}

// pyEvent is one line kvs_master.py writes on stdout.
type pyEvent struct {
	Event      string   `json:"event"`
	T          float64  `json:"t"`
	Viewer     string   `json:"viewer"`
	N          int      `json:"n"`
	GatherMS   int      `json:"gather_ms"`
	AnswerMS   int      `json:"answer_ms"`
	Candidates int      `json:"candidates"`
	Codecs     []string `json:"codecs"`
	State      string   `json:"state"`
	Error      string   `json:"error"`
	Offers     int      `json:"offers"`

	line string
	at   time.Time
}

// pyMaster is a running kvs_master.py.
type pyMaster struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr testutil.Buffer
	read   chan struct{} // closed when stdout reached EOF
	once   sync.Once

	mu     sync.Mutex
	events []pyEvent
}

// startPyMaster starts kvs_master.py on url with the ICE servers and extra
// arguments, waits until its signaling connection is open and stops it at
// the end of the test.
func startPyMaster(t *testing.T, url signaling.PresignedURL, ice []iceServer, args ...string) *pyMaster {
	t.Helper()
	script, err := filepath.Abs("kvs_master.py")
	if err != nil {
		t.Fatal(err)
	}
	if ice == nil {
		ice = []iceServer{} // never null: the script would otherwise refuse it
	}
	iceJSON, err := json.Marshal(ice)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, append([]string{script, "--loopback-only"}, args...)...)
	cmd.Env = append(os.Environ(), "KVSRTC_MASTER_URL="+string(url), "KVSRTC_ICE_SERVERS="+string(iceJSON),
		"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
	if os.Getenv("KVSRTC_TEST_LOG") == "debug" {
		cmd.Args = append(cmd.Args, "--verbose")
	}
	m := &pyMaster{t: t, cmd: cmd, read: make(chan struct{})}
	cmd.Stderr = &m.stderr
	m.stdin, err = cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v; %s", python, err, installHint)
	}
	go m.readEvents(stdout)
	t.Cleanup(m.stop)
	if _, ok := m.waitEvent(60*time.Second, "ready"); !ok {
		t.Fatalf("kvs_master.py did not connect to the signaling service within 60 s; stderr:\n%s", m.stderr.String())
	}
	return m
}

func (m *pyMaster) readEvents(r io.Reader) {
	defer close(m.read)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ev := pyEvent{line: sc.Text(), at: time.Now()}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			ev.Event = "unparsed"
		}
		m.mu.Lock()
		m.events = append(m.events, ev)
		m.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// waitEvent waits for the first event named name.
func (m *pyMaster) waitEvent(timeout time.Duration, name string) (pyEvent, bool) {
	deadline := time.Now().Add(timeout)
	for {
		for _, ev := range m.snapshot() {
			if ev.Event == name {
				return ev, true
			}
		}
		select {
		case <-m.read:
			return pyEvent{}, false
		default:
		}
		if time.Now().After(deadline) {
			return pyEvent{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *pyMaster) snapshot() []pyEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]pyEvent(nil), m.events...)
}

// named returns the events called name.
func (m *pyMaster) named(name string) []pyEvent {
	var out []pyEvent
	for _, ev := range m.snapshot() {
		if ev.Event == name {
			out = append(out, ev)
		}
	}
	return out
}

// stop ends the script (EOF on stdin, then a kill after 15 s) and waits
// for it; idempotent.
func (m *pyMaster) stop() {
	m.once.Do(func() {
		_ = m.stdin.Close()
		select {
		case <-m.read:
		case <-time.After(15 * time.Second):
			m.t.Logf("kvs_master.py did not stop within 15 s of EOF on stdin: killed")
			_ = m.cmd.Process.Kill()
			<-m.read
		}
		err := m.cmd.Wait()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			m.t.Errorf("waiting for kvs_master.py: %v", err)
		} else if err != nil {
			m.t.Logf("kvs_master.py exited: %v; stderr:\n%s", err, m.stderr.String())
		}
		// FFmpeg writes encoder notes to stderr on every run (Debian's PyAV
		// leaves its default log callback): show them only when they may help.
		if s := m.stderr.String(); s != "" && err == nil && (m.t.Failed() || os.Getenv("KVSRTC_TEST_LOG") != "") {
			m.t.Logf("kvs_master.py stderr:\n%s", s)
		}
	})
}

// history is the script's events, one a line, for failure messages.
func (m *pyMaster) history() string {
	var b strings.Builder
	for _, ev := range m.snapshot() {
		fmt.Fprintf(&b, "  %s %s\n", ev.at.Format("15:04:05.000"), ev.line)
	}
	return b.String()
}

// blackHole is a UDP socket on loopback that reads everything and answers
// nothing: a STUN server that never replies.
type blackHole struct {
	conn net.PacketConn
	done chan struct{}
	mu   sync.Mutex
	n    int
}

func newBlackHole(t *testing.T) *blackHole {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{conn: c, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		buf := make([]byte, 1500)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
			b.mu.Lock()
			b.n++
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = c.Close(); <-b.done })
	return b
}

// url is the stun: URL of the black hole.
func (b *blackHole) url() string { return "stun:" + b.conn.LocalAddr().String() }

// packets is the number of datagrams received so far.
func (b *blackHole) packets() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// startKvsrtcMaster runs kvsrtc's own master with the test pattern of
// codec on "cam", for the side-by-side figures; it returns once the master
// is connected to signaling.
func startKvsrtcMaster(t *testing.T, ctl *control.Client, codec rtc.Codec) {
	t.Helper()
	src, err := media.NewTestSource(codec, media.SourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var once sync.Once
	m, err := master.New(master.Config{Channel: "cam", Control: ctl, Video: src, LoopbackOnly: true,
		Logger: testLogger(t, "master"),
		OnEvent: func(ev master.Event) {
			if ev.Kind == master.EventReady {
				once.Do(func() { close(ready) })
			}
		}})
	if err != nil {
		src.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-done:
		t.Fatal("kvsrtc master ended before it was ready")
	case <-time.After(30 * time.Second):
		t.Fatal("kvsrtc master not ready within 30 s")
	}
}

// vresult is what a viewer run measured.
type vresult struct {
	firstFrame time.Duration // from Run's start; 0 if none
	attempts   int
	codec      string
	err        error
	history    string
}

// runDefaultViewer runs a kvsrtc viewer with default settings (loopback
// candidates only, as every test here) until its first frame, its failure
// or timeout, then stops it. mod, when set, changes the config (ForceRelay,
// VideoCodecs).
func runDefaultViewer(t *testing.T, ctl *control.Client, timeout time.Duration, mod func(*viewer.Config)) vresult {
	t.Helper()
	var (
		mu     sync.Mutex
		events []viewer.Event
	)
	streaming := make(chan viewer.Event, 1)
	cfg := viewer.Config{Channel: "cam", Control: ctl, LoopbackOnly: true, Logger: testLogger(t, "viewer"),
		OnEvent: func(e viewer.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
			if e.State == viewer.StateStreaming {
				select {
				case streaming <- e:
				default:
				}
			}
		}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := viewer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	var r vresult
	ended := false
	timer := time.NewTimer(timeout)
	select {
	case e := <-streaming:
		r.firstFrame = e.TimeToFirstFrame
	case r.err = <-done:
		ended = true
		if r.err == nil {
			r.err = errors.New("the viewer stopped without streaming")
		}
	case <-timer.C:
		r.err = fmt.Errorf("no video within %v", timeout)
	}
	timer.Stop()
	cancel()
	if !ended {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the viewer did not stop within 30 s of its context ending")
		}
	}
	sum := s.Summary()
	r.attempts = sum.Attempts
	r.codec = sum.Codec

	mu.Lock()
	var b strings.Builder
	var t0 time.Time
	for _, e := range events {
		if t0.IsZero() {
			t0 = e.Time
		}
		fmt.Fprintf(&b, "  +%-8v %-13s attempt=%d client=%s cause=%s %s\n", e.Time.Sub(t0).Round(time.Millisecond), e.State, e.Attempt, e.ClientID, e.Cause, e.Detail)
	}
	mu.Unlock()
	r.history = b.String()
	return r
}
