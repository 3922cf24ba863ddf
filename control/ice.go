package control

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// DefaultICETTL is the lifetime given to an ICE configuration without any
// TURN server (nothing in it expires; it is re-fetched this often).
const DefaultICETTL = 5 * time.Minute

// maxResponseBody bounds how much of a response is read.
const maxResponseBody = 1 << 20

// ICEServer is one ICE server in the form WebRTC stacks take (an
// RTCIceServer): STUN servers have no credentials.
type ICEServer struct {
	// URLs are stun:, turn: or turns: URIs.
	URLs []string
	// Username is the TURN username.
	Username string
	// Credential is the TURN password.
	Credential string
}

// ICEConfig is a channel's ICE server configuration at one point in time.
type ICEConfig struct {
	// Servers lists the STUN server (if any) first, then the TURN servers
	// in the service's order.
	Servers []ICEServer
	// TTL is the smallest Ttl of the TURN servers (DefaultICETTL without
	// TURN servers).
	TTL time.Duration
	// FetchedAt is when the configuration was received (local clock).
	FetchedAt time.Time
	// Expires is FetchedAt + TTL: the TURN credentials are not valid after.
	Expires time.Time
	// RefreshAt is when to fetch a new configuration: the larger margin of
	// 30 s and 15 % of TTL before Expires (half-way when TTL is under 30 s).
	RefreshAt time.Time
}

// withTimes sets FetchedAt, Expires and RefreshAt from TTL and a fetch time.
func (cfg ICEConfig) withTimes(fetched time.Time) ICEConfig {
	cfg.FetchedAt = fetched
	cfg.Expires = fetched.Add(cfg.TTL)
	margin := max(30*time.Second, cfg.TTL*15/100)
	if margin >= cfg.TTL {
		margin = cfg.TTL / 2
	}
	cfg.RefreshAt = cfg.Expires.Add(-margin)
	return cfg
}

// HasTURN reports whether the configuration holds any TURN server.
func (cfg ICEConfig) HasTURN() bool {
	for _, s := range cfg.Servers {
		if s.Username != "" || s.Credential != "" {
			return true
		}
		for _, u := range s.URLs {
			if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
				return true
			}
		}
	}
	return false
}

// ICEServers fetches the ICE servers of a channel from its HTTPS endpoint
// (GetIceServerConfig, with Service TURN and the optional clientID) and
// puts the configured STUN server first. It signs the request with the
// corrected clock, and retries once after a clock-skew refusal.
func (c *Client) ICEServers(ctx context.Context, arn, httpsEndpoint, clientID string) (ICEConfig, error) {
	if _, err := kvsproto.ParseChannelARN(arn); err != nil {
		return ICEConfig{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if clientID != "" {
		if err := kvsproto.ValidateClientID(clientID); err != nil {
			return ICEConfig{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
	}
	u, err := url.Parse(httpsEndpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return ICEConfig{}, fmt.Errorf("%w: HTTPS endpoint %q is not an https:// URL", ErrInvalidArgument, httpsEndpoint)
	}
	target := strings.TrimRight(httpsEndpoint, "/") + kvsproto.PathGetIceServerConfig
	body, err := json.Marshal(kvsproto.GetIceServerConfigInput{ChannelARN: arn, ClientID: clientID, Service: "TURN"})
	if err != nil {
		return ICEConfig{}, err
	}
	var out kvsproto.GetIceServerConfigOutput
	err = c.retrySkew(func() error {
		out = kvsproto.GetIceServerConfigOutput{}
		return c.postJSON(ctx, "GetIceServerConfig", "KVS signaling endpoint", target, body, &out)
	})
	if err != nil {
		return ICEConfig{}, err
	}
	cfg := c.iceConfigFrom(out)
	cfg = cfg.withTimes(c.now())
	c.log.Debug("ICE servers fetched", "servers", len(cfg.Servers), "ttl", cfg.TTL)
	return cfg, nil
}

// iceConfigFrom builds an ICEConfig (without times) from the service's
// answer, skipping unusable entries.
func (c *Client) iceConfigFrom(out kvsproto.GetIceServerConfigOutput) ICEConfig {
	var cfg ICEConfig
	if c.stun != "" {
		cfg.Servers = append(cfg.Servers, ICEServer{URLs: []string{c.stun}})
	}
	for i, s := range out.IceServerList {
		if len(s.Uris) == 0 {
			c.log.Warn("GetIceServerConfig returned an ICE server without URIs; skipping it", "index", i)
			continue
		}
		if s.Ttl <= 0 {
			c.log.Warn("GetIceServerConfig returned an ICE server without a positive Ttl; skipping it", "index", i, "ttl", s.Ttl)
			continue
		}
		ttl := time.Duration(s.Ttl) * time.Second
		if cfg.TTL == 0 || ttl < cfg.TTL {
			cfg.TTL = ttl
		}
		cfg.Servers = append(cfg.Servers, ICEServer{URLs: append([]string(nil), s.Uris...), Username: s.Username, Credential: s.Password})
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultICETTL
	}
	return cfg
}

// postJSON sends a SigV4-signed REST-JSON POST (signing name kinesisvideo)
// to target, an endpoint of the kind what names (for the unreachable
// error), and decodes a 2xx answer into out (nil: the body is ignored), or
// returns an *APIError.
func (c *Client) postJSON(ctx context.Context, op, what, target string, body []byte, out any) error {
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("control: %s: %w: %w", op, ErrMissingCredentials, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("control: %s: %w", op, err)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Content-Sha256", hash)
	if err := c.signer.SignHTTP(ctx, creds, req, hash, "kinesisvideo", c.region, c.Now()); err != nil {
		return fmt.Errorf("control: %s: signing: %w", op, err)
	}
	resp, err := c.httpc.Do(req)
	if err != nil {
		if ue := Unreachable(err, what, op, target); ue != nil {
			return ue
		}
		return fmt.Errorf("control: %s: %w", op, err)
	}
	defer resp.Body.Close()
	c.observeDate(resp.Header, c.now())
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return fmt.Errorf("control: %s: reading the response: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		return parseErrorResponse(op, resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadResponse, op, err)
	}
	return nil
}
