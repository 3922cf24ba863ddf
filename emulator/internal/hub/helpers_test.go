package hub

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testARN  = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/demo/1700000000000"
	otherARN = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/other/1700000000001"
)

var errConnClosed = errors.New("fake conn: closed")

// fakeConn is an in-memory Conn that records what the hub does with it.
type fakeConn struct {
	mu       sync.Mutex
	frames   []string
	closed   bool
	code     int
	reason   string
	abrupt   bool
	failSend bool // Send returns an error
}

func (c *fakeConn) Send(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.failSend {
		return errConnClosed
	}
	c.frames = append(c.frames, string(b))
	return nil
}

func (c *fakeConn) Close(code int, reason string, abrupt bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed, c.code, c.reason, c.abrupt = true, code, reason, abrupt
}

// take returns the frames sent so far and forgets them.
func (c *fakeConn) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.frames
	c.frames = nil
	return f
}

func (c *fakeConn) closeState() (closed bool, code int, reason string, abrupt bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed, c.code, c.reason, c.abrupt
}

// logRec is one captured log record.
type logRec struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu    *sync.Mutex
	recs  *[]logRec
	attrs []slog.Attr
}

func newRecorder() *recorder { return &recorder{mu: new(sync.Mutex), recs: new([]logRec)} }

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	lr := logRec{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	for _, a := range r.attrs {
		lr.attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		lr.attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	*r.recs = append(*r.recs, lr)
	r.mu.Unlock()
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{mu: r.mu, recs: r.recs, attrs: append(append([]slog.Attr(nil), r.attrs...), as...)}
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

// find returns the records whose message contains msg.
func (r *recorder) find(msg string) []logRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logRec
	for _, l := range *r.recs {
		if strings.Contains(l.msg, msg) {
			out = append(out, l)
		}
	}
	return out
}

// faultLogs returns the WARN records with a fault attribute of kind k.
func (r *recorder) faultLogs(k FaultKind, msg string) []logRec {
	var out []logRec
	for _, l := range r.find(msg) {
		if l.level == slog.LevelWarn && l.attrs["fault"] == string(k) {
			out = append(out, l)
		}
	}
	return out
}

type testHub struct {
	*Hub
	t   testing.TB
	log *recorder
}

func newTestHub(t testing.TB, cfg Config) *testHub {
	t.Helper()
	rec := newRecorder()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(rec)
	}
	h := New(cfg)
	t.Cleanup(h.Close)
	return &testHub{Hub: h, t: t, log: rec}
}

func (h *testHub) joinE(arn string, role kvsproto.Role, id string) (*Member, *fakeConn, error) {
	c := &fakeConn{}
	m, err := h.Join(JoinRequest{ChannelARN: arn, MessageTTL: 60 * time.Second, Role: role, ClientID: id, RemoteAddr: "127.0.0.1:1", Conn: c})
	return m, c, err
}

func (h *testHub) join(arn string, role kvsproto.Role, id string) (*Member, *fakeConn) {
	h.t.Helper()
	m, c, err := h.joinE(arn, role, id)
	if err != nil {
		h.t.Fatalf("Join(%s %q): %v", role, id, err)
	}
	return m, c
}

func (h *testHub) master(arn string) (*Member, *fakeConn) {
	return h.join(arn, kvsproto.RoleMaster, "")
}

func (h *testHub) viewer(arn, id string) (*Member, *fakeConn) {
	return h.join(arn, kvsproto.RoleViewer, id)
}

// frames asserts that c received exactly want.
func frames(t testing.TB, c *fakeConn, want ...string) {
	t.Helper()
	got := c.take()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d:\ngot:  %q\nwant: %q", len(got), len(want), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("frame %d:\ngot:  %s\nwant: %s", i, got[i], want[i])
		}
	}
}

// statusOf decodes the single STATUS_RESPONSE c received.
func statusOf(t testing.TB, c *fakeConn) kvsproto.StatusResponse {
	t.Helper()
	got := c.take()
	if len(got) != 1 {
		t.Fatalf("want one STATUS_RESPONSE, got %q", got)
	}
	ev, err := kvsproto.DecodeEvent([]byte(got[0]))
	if err != nil || ev.MessageType != kvsproto.MessageStatusResponse || ev.StatusResponse == nil {
		t.Fatalf("not a STATUS_RESPONSE: %s (%v)", got[0], err)
	}
	return *ev.StatusResponse
}

func payload(t testing.TB, v any) string {
	t.Helper()
	p, err := kvsproto.EncodePayload(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// msg builds a client frame in the JS SDK's form.
func msg(action kvsproto.Action, p, recipient, corr string) []byte {
	m := kvsproto.ClientMessage{Action: action, MessagePayload: p, RecipientClientID: recipient, CorrelationID: corr}
	b, _ := m.Encode()
	return b
}

// event is the frame the hub must send for a routed message.
func event(action kvsproto.Action, p, sender string) string {
	s := `{"messagePayload":"` + p + `","messageType":"` + string(action) + `"`
	if sender != "" {
		s += `,"senderClientId":"` + sender + `"`
	}
	return s + "}"
}
