package node

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"

	"github.com/kvsrtc/kvsrtc/internal/testutil"
)

// installHint is what to do when Node or the npm packages are missing.
const installHint = "run scripts/test.sh once (or bash scripts/deps/node.sh): it installs Debian's npm and runs npm ci in internal/interop/node/js"

// netnsEnv marks the test binary re-executed in its own network namespace.
const netnsEnv = "KVSRTC_INTEROP_NODE_NETNS"

// script is the Node glue, relative to the package directory.
const script = "js/kvs-peer.js"

// shared is what every test uses: one local KVS service with TLS and a
// control client trusting it.
var shared struct {
	problem string // why the tests cannot run; "" when they can
	node    string // path of node
	version string // node --version
	env     *kvstest.Env
	emu     *emulator.Server
	ctl     *control.Client
	tr      *http.Transport
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The tests talk to their own local service only.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	if shared.problem = checkNode(); shared.problem != "" {
		return m.Run() // every test fails (CI) or skips with the problem
	}
	if os.Getenv(netnsEnv) != "1" {
		code, started, err := reexecInNetns()
		if started {
			if err != nil {
				fmt.Fprintf(os.Stderr, "FAIL: interop/node: running the tests in a network namespace: %v\n", err)
			}
			return code
		}
		shared.problem = fmt.Sprintf("the tests run Node's libwebrtc only inside a loopback-only network namespace, and none could be made: %v", err)
		return m.Run()
	}
	if err := loopbackUp(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: interop/node: in the test's network namespace: %v\n", err)
		return 1
	}

	env, err := kvstest.Start(kvstest.Options{Emulator: emulator.Config{TLS: true, Logger: testLogger("local")}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: interop/node: starting the local KVS service: %v\n", err)
		return 1
	}
	defer env.Close()
	shared.env = env
	shared.emu, shared.ctl = env.Server, env.Control
	shared.tr = env.HTTPClient.Transport.(*http.Transport)
	return m.Run()
}

// checkNode finds node and checks that the npm packages load; it returns
// what is missing, or "".
func checkNode() string {
	node, err := exec.LookPath("node")
	if err != nil {
		return fmt.Sprintf("node is not in PATH (%v); %s", err, installHint)
	}
	shared.node = node
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "-p", `require("@roamhq/wrtc"); require("amazon-kinesis-video-streams-webrtc"); require("aws-sdk"); require("ws"); process.version`)
	cmd.Dir = "js"
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("the npm packages do not load in %s (%v): %s; %s", node, err, firstError(string(out)), installHint)
	}
	shared.version = strings.TrimSpace(string(out))
	return ""
}

// firstError is the first line of a Node error report that names the
// error ("Error: Cannot find module ..."), or the whole output.
func firstError(out string) string {
	for line := range strings.Lines(out) {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "Error") || strings.Contains(l, "Error:") {
			return l
		}
	}
	return strings.TrimSpace(out)
}

// requireSetup fails the test under CI=true and skips it otherwise when
// the prerequisites are missing.
func requireSetup(t *testing.T) {
	t.Helper()
	if shared.problem == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %s", shared.problem)
	}
	t.Skip(shared.problem)
}

func testLogger(component string) *slog.Logger { return kvstest.Logger(nil, component) }

// channelSeq makes channel names unique across repeated runs (-count).
var channelSeq atomic.Int64

// newChannel creates a channel named after the test (and suffix).
func newChannel(t *testing.T, suffix string) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", "_", "-").Replace(t.Name() + suffix)
	name = fmt.Sprintf("%s-%d", name, channelSeq.Add(1))
	if _, err := shared.emu.CreateChannel(t.Context(), name, 0); err != nil {
		t.Fatal(err)
	}
	return name
}

// startMaster runs a kvsrtc master with the VP8 test pattern (640x360, as
// "kvsrtc master --source testsrc-vp8") on channel until the test ends.
func startMaster(t *testing.T, channel string) {
	t.Helper()
	shared.env.StartMaster(t, kvstest.MasterOptions{Channel: channel, Video: rtc.CodecVP8, Logger: testLogger("master")})
}

// runViewer runs one kvsrtc viewer session on channel until it has
// streamed for a second, and returns its summary.
func runViewer(t *testing.T, channel string, relay bool) (viewer.Summary, error) {
	t.Helper()
	s, err := viewer.New(viewer.Config{
		Channel: channel, Control: shared.ctl, LoopbackOnly: true, ForceRelay: relay,
		HTTPClient: &http.Client{Transport: shared.tr},
		Logger:     testLogger("viewer"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Stop once minFrames frames are in, or streamWait after the first
	// frame: a starved sender (the Node master encodes VP8 in software)
	// gets that long to show that it streams.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return s.Summary(), err
		case <-tick.C:
			st := s.Stats()
			if st.Frames >= minFrames || (!st.FirstFrame.IsZero() && time.Since(st.FirstFrame) > streamWait) {
				cancel()
			}
		}
	}
}

// streamWait is how long a viewer waits for minFrames after its first
// frame.
const streamWait = 5 * time.Second

// nodeEvent is one line the Node glue printed.
type nodeEvent struct {
	Event      string          `json:"event"`
	Ms         float64         `json:"ms"` // since the Node process started
	SinceStart float64         `json:"sinceStart"`
	Width      int             `json:"width"`
	Height     int             `json:"height"`
	Frames     int             `json:"frames"`
	Decoded    int             `json:"framesDecoded"`
	Codec      string          `json:"codec"`
	Error      string          `json:"error"`
	Candidates json.RawMessage `json:"candidates"`
	Pair       string          `json:"pair"` // the selected candidate pair, "TYPE ADDR:PORT -> TYPE ADDR:PORT"
	// The two-way viewer's "done" (kvs-twoway.js).
	Replies        []string  `json:"replies"`
	TalkMs         float64   `json:"talkMs"`
	AudioBytesSent float64   `json:"audioBytesSent"`
	at             time.Time // when the test read it
}

// nodeProc is a running Node glue process.
type nodeProc struct {
	cmd     *exec.Cmd
	started time.Time
	events  chan nodeEvent // closed when stdout ends
	stderr  *testutil.Buffer
	stdin   io.WriteCloser
	done    chan struct{} // closed after Wait
	err     error         // Wait's result, after done
	mu      sync.Mutex
	seen    []nodeEvent
}

// startNode runs the glue in role for channel with the local service's
// settings in its environment.
func startNode(t *testing.T, role, channel string, extraEnv ...string) *nodeProc {
	t.Helper()
	c := shared.emu.Credentials()
	home := t.TempDir()
	cmd := exec.Command(shared.node, filepath.Base(script), role)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"NODE_EXTRA_CA_CERTS=" + shared.emu.CACertFile(),
		"AWS_REGION=" + shared.emu.Region(),
		"AWS_ENDPOINT_URL=" + shared.emu.URL(),
		"AWS_ACCESS_KEY_ID=" + c.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey,
		"AWS_SESSION_TOKEN=" + c.SessionToken,
		"AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1",
		"AWS_EC2_METADATA_DISABLED=true",
		"KVS_CHANNEL=" + channel,
		"KVS_EXIT_ON_STDIN_EOF=1", // a master ends when the test closes its stdin (or exits)
	}, extraEnv...)
	p := &nodeProc{cmd: cmd, events: make(chan nodeEvent, 256), stderr: &testutil.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev nodeEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				_, _ = p.stderr.Write(append([]byte("stdout: "), append(sc.Bytes(), '\n')...))
				continue
			}
			ev.at = time.Now()
			p.mu.Lock()
			p.seen = append(p.seen, ev)
			p.mu.Unlock()
			p.events <- ev
		}
		_, _ = io.Copy(io.Discard, stdout)
		close(p.events)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop closes the glue's stdin (a master stops then), waits up to 10 s and
// kills it after that. It drains the events so the reader can finish.
func (p *nodeProc) stop(t *testing.T) {
	_ = p.stdin.Close()
	go func() {
		for range p.events {
		}
	}()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("node did not stop within 10 s of closing its stdin\n%s", p.log())
	}
}

// next returns the first event named one of names, or an error (with the
// glue's output) when the glue reports an error, exits or bound passes.
func (p *nodeProc) next(bound time.Duration, names ...string) (nodeEvent, error) {
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				<-p.done
				return nodeEvent{}, fmt.Errorf("node exited (%v) before %v\n%s", p.err, names, p.log())
			}
			if ev.Event == "error" {
				return nodeEvent{}, fmt.Errorf("node failed: %s\n%s", ev.Error, p.log())
			}
			if slices.Contains(names, ev.Event) {
				return ev, nil
			}
		case <-timer.C:
			return nodeEvent{}, fmt.Errorf("node: no %v within %v\n%s", names, bound, p.log())
		}
	}
}

// wait is next, failing the test on an error.
func (p *nodeProc) wait(t *testing.T, bound time.Duration, names ...string) nodeEvent {
	t.Helper()
	ev, err := p.next(bound, names...)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// log is what the glue printed, for failure messages.
func (p *nodeProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	b.WriteString("node events:\n")
	for _, ev := range p.seen {
		js, _ := json.Marshal(ev)
		fmt.Fprintf(&b, "  %s %s\n", ev.Event, js)
	}
	b.WriteString("node stderr:\n")
	b.WriteString(p.stderr.String())
	return b.String()
}
