package emulator_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/sigv4"
)

// capture is the part of testdata/vectors/browser-capture-*.json the
// replay uses (see shared/testvectors/README.md).
type capture struct {
	Inputs struct {
		AccessKeyID     string  `json:"accessKeyId"`
		SecretAccessKey string  `json:"secretAccessKey"`
		SessionToken    *string `json:"sessionToken"`
		Region          string  `json:"region"`
		Date            string  `json:"date"`
		ChannelName     string  `json:"channelName"`
		ChannelARN      string  `json:"channelARN"`
		ViewerClientID  string  `json:"viewerClientId"`
	} `json:"inputs"`
	ControlPlane []struct {
		Operation string `json:"operation"`
		Request   struct {
			Method     string     `json:"method"`
			URL        string     `json:"url"`
			RawHeaders [][]string `json:"rawHeaders"`
			Body       string     `json:"body"`
		} `json:"request"`
	} `json:"controlPlane"`
	Preflights []struct {
		Request struct {
			URL        string     `json:"url"`
			RawHeaders [][]string `json:"rawHeaders"`
		} `json:"request"`
	} `json:"preflights"`
	Websockets []struct {
		Conn          string     `json:"conn"`
		Role          string     `json:"role"`
		RequestTarget string     `json:"requestTarget"`
		RawHeaders    [][]string `json:"rawHeaders"`
	} `json:"websockets"`
	Messages []struct {
		Seq       int    `json:"seq"`
		Conn      string `json:"conn"`
		Role      string `json:"role"`
		Direction string `json:"direction"`
		Raw       string `json:"raw"`
	} `json:"messages"`
}

func header(raw [][]string, name string) string {
	for _, kv := range raw {
		if strings.EqualFold(kv[0], name) {
			return kv[1]
		}
	}
	return ""
}

// replayRequest sends a recorded request to srv with its recorded Host.
func replayRequest(t *testing.T, c *client, method, target string, raw [][]string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.base+target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range raw {
		switch strings.ToLower(kv[0]) {
		case "host":
			req.Host = kv[1]
		case "content-length", "connection", "accept-encoding":
		default:
			req.Header.Add(kv[0], kv[1])
		}
	}
	st, _, out := c.do(req)
	return st, out
}

func TestGoldenBrowserCaptures(t *testing.T) {
	for _, file := range []string{"browser-capture-fixed-time.json", "browser-capture-session-token.json"} {
		t.Run(strings.TrimSuffix(file, ".json"), func(t *testing.T) { replayCapture(t, file) })
	}
}

func replayCapture(t *testing.T, file string) {
	raw, err := os.ReadFile("../testdata/vectors/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var cp capture
	if err := json.Unmarshal(raw, &cp); err != nil {
		t.Fatal(err)
	}
	in := cp.Inputs
	date, err := time.Parse(time.RFC3339Nano, in.Date)
	if err != nil {
		t.Fatal(err)
	}
	arn, err := kvsproto.ParseChannelARN(in.ChannelARN)
	if err != nil {
		t.Fatal(err)
	}
	creds := sigv4.Credentials{AccessKeyID: in.AccessKeyID, SecretAccessKey: in.SecretAccessKey}
	if in.SessionToken != nil {
		creds.SessionToken = *in.SessionToken // the service then requires this exact token
	}
	srv := start(t, emulator.Config{
		Region: in.Region, Credentials: []sigv4.Credentials{creds}, PreCreate: []kvsproto.ChannelARN{arn},
		Now: func() time.Time { return date }, DisableQuotas: true, TURNDisabled: true,
	})
	c := newClient(t, srv)
	c.creds = creds
	c.now = func() time.Time { return date }

	for _, p := range cp.Preflights {
		st, _ := replayRequest(t, c, http.MethodOptions, p.Request.URL, p.Request.RawHeaders, "")
		if st/100 != 2 {
			t.Errorf("preflight %s: HTTP %d", p.Request.URL, st)
		}
	}
	if len(cp.ControlPlane) == 0 || len(cp.Websockets) == 0 {
		t.Fatal("capture without requests")
	}
	for _, cpr := range cp.ControlPlane {
		st, body := replayRequest(t, c, cpr.Request.Method, cpr.Request.URL, cpr.Request.RawHeaders, cpr.Request.Body)
		if st != http.StatusOK {
			t.Fatalf("%s (Host %s): HTTP %d %s", cpr.Operation, header(cpr.Request.RawHeaders, "Host"), st, body)
		}
		switch cpr.Operation {
		case "DescribeSignalingChannel":
			var out kvsproto.DescribeSignalingChannelOutput
			if err := json.Unmarshal(body, &out); err != nil || out.ChannelInfo.ChannelARN != in.ChannelARN || out.ChannelInfo.CreationTime != 1.7e9 {
				t.Fatalf("describe: %s", body)
			}
		case "GetSignalingChannelEndpoint":
			var out kvsproto.GetSignalingChannelEndpointOutput
			if err := json.Unmarshal(body, &out); err != nil || len(out.ResourceEndpointList) != 2 {
				t.Fatalf("endpoints: %s", body)
			}
		case "GetIceServerConfig":
			if !strings.Contains(string(body), `"IceServerList":[`) {
				t.Fatalf("ice: %s", body)
			}
		}
	}

	// Connect every recorded WebSocket exactly as recorded (path "/", Host
	// of the capture relay): the role follows X-Amz-ClientId.
	conns := map[string]*websocket.Conn{}
	roles := map[string]string{}
	for _, w := range cp.Websockets {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ws, resp, err := c.dialURL(ctx, "ws://"+srv.Addr().String()+w.RequestTarget, header(w.RawHeaders, "Host"))
		cancel()
		if err != nil {
			st := 0
			if resp != nil {
				st = resp.StatusCode
			}
			t.Fatalf("websocket %s (%s): HTTP %d: %v", w.Conn, w.Role, st, err)
		}
		conns[w.Conn], roles[w.Conn] = ws, w.Role
	}
	// A tampered URL is refused.
	tampered := []byte(cp.Websockets[0].RequestTarget)
	i := strings.Index(string(tampered), "X-Amz-Signature=") + len("X-Amz-Signature=")
	if tampered[i] == '0' {
		tampered[i] = '1'
	} else {
		tampered[i] = '0'
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if ws, resp, err := c.dialURL(ctx, "ws://"+srv.Addr().String()+string(tampered), header(cp.Websockets[0].RawHeaders, "Host")); err == nil || resp == nil || resp.StatusCode != 403 {
		if ws != nil {
			ws.CloseNow()
		}
		t.Fatalf("tampered URL accepted or not 403: %v", err)
	}
	cancel()

	// Replay every client frame; each must reach the other side.
	sort.Slice(cp.Messages, func(i, j int) bool { return cp.Messages[i].Seq < cp.Messages[j].Seq })
	var masterConn *websocket.Conn
	for k, r := range roles {
		if r == "MASTER" {
			masterConn = conns[k]
		}
	}
	var toMaster, toViewer []kvsproto.ClientMessage
	for _, m := range cp.Messages {
		if m.Direction != "client->server" {
			continue
		}
		msg, err := kvsproto.DecodeClientMessage([]byte(m.Raw))
		if err != nil {
			t.Fatalf("recorded frame %d: %v", m.Seq, err)
		}
		send(t, conns[m.Conn], m.Raw)
		if m.Role == "VIEWER" {
			toMaster = append(toMaster, msg)
		} else {
			toViewer = append(toViewer, msg)
		}
	}
	if masterConn == nil {
		// The session-token capture has no master: a master that connects
		// now gets the buffered viewer frames.
		u, err := sigv4.PresignURL(srv.WSSEndpoint(kvsproto.RoleMaster), map[string]string{"X-Amz-ChannelARN": in.ChannelARN}, creds, in.Region, date, 0)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		masterConn, _, err = c.dialURL(ctx, u, "")
		cancel()
		if err != nil {
			t.Fatalf("late master: %v", err)
		}
	}
	for _, want := range toMaster {
		ev := recv(t, masterConn, 5*time.Second)
		if string(ev.MessageType) != string(want.Action) || ev.MessagePayload != want.MessagePayload || ev.SenderClientID != in.ViewerClientID {
			t.Fatalf("master got %s from %q, want %s from %q", ev.MessageType, ev.SenderClientID, want.Action, in.ViewerClientID)
		}
	}
	for k, r := range roles {
		if r != "VIEWER" {
			continue
		}
		for _, want := range toViewer {
			ev := recv(t, conns[k], 5*time.Second)
			if string(ev.MessageType) != string(want.Action) || ev.MessagePayload != want.MessagePayload || ev.SenderClientID != "" {
				t.Fatalf("viewer got %+v, want %s", ev, want.Action)
			}
		}
	}
}

// TestGoldenNodeRequests replays the aws-sdk (node) control-plane requests,
// including one signed for the real AWS host name.
func TestGoldenNodeRequests(t *testing.T) {
	raw, err := os.ReadFile("../testdata/vectors/sigv4-control-plane-node.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Cases []struct {
			Name   string `json:"name"`
			Inputs struct {
				SessionToken *string `json:"sessionToken"`
				Date         string  `json:"date"`
			} `json:"inputs"`
			Request struct {
				Method  string         `json:"method"`
				Path    string         `json:"path"`
				Headers map[string]any `json:"headers"`
				Body    string         `json:"body"`
			} `json:"request"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	date, _ := time.Parse(time.RFC3339Nano, v.Cases[0].Inputs.Date)
	arn := kvsproto.ChannelARN{Partition: "aws", Region: "us-west-2", Account: "123456789012", Name: "test-channel", CreationMillis: 1700000000000}
	srv := start(t, emulator.Config{PreCreate: []kvsproto.ChannelARN{arn}, Now: func() time.Time { return date }, TURNDisabled: true})
	c := newClient(t, srv)
	for _, tc := range v.Cases {
		var hdrs [][]string
		for k, val := range tc.Request.Headers {
			hdrs = append(hdrs, []string{k, strings.TrimSpace(strings.Trim(jsonString(val), `"`))})
		}
		st, body := replayRequest(t, c, tc.Request.Method, tc.Request.Path, hdrs, tc.Request.Body)
		if st != http.StatusOK {
			t.Errorf("%s: HTTP %d %s", tc.Name, st, body)
		}
	}
}

func jsonString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}
