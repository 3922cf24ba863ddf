package player

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// probeTimeout bounds the signaling probe of a diagnosis.
const probeTimeout = 5 * time.Second

// probeSignaling finds out why a browser's WebSocket could not open (a
// browser sees only "failed"): it presigns a URL for a throwaway viewer
// client id and makes the same upgrade request, reading the service's
// refusal. It returns "" when the upgrade succeeds (the connection is
// closed at once) or the probe itself fails. When the service gives no
// answer at all (DNS, dial, TLS, proxy, timeout) the cause is
// cause.Unreachable and err says where and what failed.
func (s *Server) probeSignaling(ctx context.Context, channel string) (c cause.Cause, code string, err error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	sess, err := s.mint(ctx, channel, "")
	if err != nil {
		c, _, _ := classify(err)
		return c, "", err
	}
	u := sess.SignalingURL
	switch {
	case strings.HasPrefix(u, "wss://"):
		u = "https://" + strings.TrimPrefix(u, "wss://")
	case strings.HasPrefix(u, "ws://"):
		u = "http://" + strings.TrimPrefix(u, "ws://")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", "", nil
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key[:]))
	hc := s.cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ue := control.Unreachable(err, "KVS signaling endpoint", "WebSocket upgrade", endpointOf(sess.SignalingURL)); ue != nil {
			s.log.Info("signaling probe: endpoint unreachable", "channel", channel, "endpoint", ue.Endpoint, "failed", ue.Failure, "err", err)
			return cause.Unreachable, "", ue
		}
		s.log.Debug("signaling probe failed", "channel", channel, "err", err)
		return "", "", nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return "", "", nil // the service accepts viewers now
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	code, msg := awsError(resp, body)
	s.log.Info("signaling probe refused", "channel", channel, "status", resp.StatusCode, "code", code, "message", msg)
	return handshakeCause(resp.StatusCode, code, msg), code, nil
}

// endpointOf returns the scheme, host and port of a URL (a presigned URL's
// query carries credentials).
func endpointOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// awsError reads the AWS error code (x-amzn-ErrorType, or the body's
// code/__type) and message of a refused upgrade.
func awsError(resp *http.Response, body []byte) (code, msg string) {
	code = resp.Header.Get("X-Amzn-ErrorType")
	var fields map[string]any
	if json.Unmarshal(body, &fields) == nil {
		for k, v := range fields {
			s, _ := v.(string)
			switch strings.ToLower(k) {
			case "message":
				msg = s
			case "code", "__type":
				if code == "" {
					code = s
				}
			}
		}
	}
	if i := strings.IndexAny(code, ":,"); i >= 0 {
		code = code[:i]
	}
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	return strings.TrimSpace(code), msg
}

// handshakeCause maps a refused WebSocket upgrade to a cause, the way
// package cause classifies the viewer's own refused upgrades.
func handshakeCause(status int, code, msg string) cause.Cause {
	c, _ := cause.Classify(&signaling.HandshakeError{StatusCode: status, Code: code, Message: msg})
	return c
}
