package player

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// loadAssets reads the embedded files and renders the pages.
func (s *Server) loadAssets() error {
	cfgJSON, err := json.Marshal(s.pageConfig())
	if err != nil {
		return err
	}
	boot, err := assetFS.ReadFile("assets/bootstrap.js")
	if err != nil {
		return err
	}
	var app bytes.Buffer
	app.WriteString("(() => {\n'use strict';\n")
	for _, f := range appSources {
		b, err := assetFS.ReadFile("assets/" + f)
		if err != nil {
			return err
		}
		app.Write(b)
		app.WriteString("\n")
	}
	app.WriteString("})();\n")
	if bytes.Contains(boot, []byte("</script")) || bytes.Contains(app.Bytes(), []byte("</script")) {
		return errors.New("player: an inline script contains </script")
	}
	// The style sheet is inline too: an external one would hold the page's
	// parsing (and so the first connection's events) until it arrives.
	style, err := assetFS.ReadFile("assets/player.css")
	if err != nil {
		return err
	}
	tile, err := assetFS.ReadFile("assets/tile.css")
	if err != nil {
		return err
	}
	style = append(append(style, '\n'), tile...)
	if bytes.Contains(style, []byte("</style")) {
		return errors.New("player: the style sheet contains </style")
	}
	hash := func(b []byte) string {
		sum := sha256.Sum256(b)
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	s.csp = fmt.Sprintf(contentSecurityPolicy, hash(boot)+" "+hash(app.Bytes()), hash(style))
	s.pages = make(map[string][]byte)
	s.assets = make(map[string]asset)
	return fs.WalkDir(assetFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assetFS.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "assets/")
		if strings.HasSuffix(name, ".html") {
			b = bytes.ReplaceAll(b, []byte(configPlaceholder), cfgJSON)
			b = bytes.ReplaceAll(b, []byte(bootstrapPlaceholder), boot)
			b = bytes.ReplaceAll(b, []byte(appPlaceholder), app.Bytes())
			b = bytes.ReplaceAll(b, []byte(stylePlaceholder), style)
			s.pages[strings.TrimSuffix(name, ".html")] = b
			return nil
		}
		if strings.HasSuffix(name, ".js") || strings.HasSuffix(name, ".ts") {
			return nil // inlined in the pages, or part of the module (module.go)
		}
		sum := sha256.Sum256(b)
		s.assets[name] = asset{body: b, ctype: contentType(name), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	}
	return "application/octet-stream"
}

// pagePolicy is the retry policy as the page reads it (milliseconds).
type pagePolicy struct {
	AnswerTimeoutMs   int64 `json:"answerTimeoutMs"`
	MediaTimeoutMs    int64 `json:"mediaTimeoutMs"`
	MaxAttempts       int   `json:"maxAttempts"`
	BackoffBaseMs     int64 `json:"backoffBaseMs"`
	BackoffCapMs      int64 `json:"backoffCapMs"`
	NoJitter          bool  `json:"noJitter"`
	BudgetMs          int64 `json:"budgetMs"` // <= 0: none
	StallTimeoutMs    int64 `json:"stallTimeoutMs"`
	ICERestartGraceMs int64 `json:"iceRestartGraceMs"`
	// LateAnswerWindowMs: see retry.Policy.LateAnswerWindow (<= 0: off).
	LateAnswerWindowMs int64 `json:"lateAnswerWindowMs"`
}

type pageConfig struct {
	Channels     []string   `json:"channels"`
	Policy       pagePolicy `json:"policy"`
	LoopbackOnly bool       `json:"loopbackOnly,omitempty"`
	// Talk: push-to-talk (a send-receive audio transceiver in every offer).
	Talk bool `json:"talk,omitempty"`
	// Data: a data channel in every offer, and its console.
	Data bool `json:"data,omitempty"`
}

func (s *Server) pageConfig() pageConfig {
	p := s.policy
	return pageConfig{Channels: s.cfg.Channels, LoopbackOnly: s.cfg.LoopbackOnly, Talk: !s.cfg.NoTalk, Data: s.cfg.Data, Policy: pagePolicy{
		AnswerTimeoutMs: p.AnswerTimeout.Milliseconds(), MediaTimeoutMs: p.MediaTimeout.Milliseconds(),
		MaxAttempts: p.MaxAttempts, BackoffBaseMs: p.BackoffBase.Milliseconds(), BackoffCapMs: p.BackoffCap.Milliseconds(),
		NoJitter: p.NoJitter, BudgetMs: p.TotalBudget.Milliseconds(),
		StallTimeoutMs: s.cfg.StallTimeout.Milliseconds(), ICERestartGraceMs: s.cfg.ICERestartGrace.Milliseconds(),
		LateAnswerWindowMs: p.LateAnswerWindow.Milliseconds(),
	}}
}

func (s *Server) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, status := s.authorize(w, r); !ok {
			q := r.URL.Query()
			code, token := q.Get("code"), q.Get("token")
			q.Del("code")
			q.Del("token")
			rest := r.URL.Path
			if len(q) > 0 {
				rest += "?" + q.Encode()
			}
			if code != "" || token != "" {
				if st := s.signIn(w, r, code, token); st == 0 {
					// Signed in: drop the code or token from the address bar.
					http.Redirect(w, r, rest, http.StatusSeeOther)
					return
				} else if st == http.StatusTooManyRequests {
					status = st
				}
			}
			if status == http.StatusTooManyRequests {
				s.loginError(w, rest, "Too many wrong attempts: wait a minute and try again.", status)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(rest), http.StatusSeeOther)
			return
		}
		sessions := s.pageSessions(r, name)
		js, err := json.Marshal(sessions)
		if err != nil {
			js = []byte("{}")
		}
		// Let the browser resolve the signaling endpoints' names while it
		// parses the page. Not rel=preconnect: a WebSocket opened no sooner
		// after one (measured in Chromium), and the extra TLS handshake
		// costs CPU while the page connects.
		origins := map[string]bool{}
		for _, sess := range sessions {
			if o := signalingOrigin(sess.SignalingURL); o != "" && !origins[o] {
				origins[o] = true
				w.Header().Add("Link", "<"+o+">; rel=dns-prefetch")
			}
		}
		s.writePage(w, http.StatusOK, bytes.Replace(s.pages[name], []byte(sessionsPlaceholder), js, 1))
	}
}

// signalingOrigin is the https:// or http:// origin of a ws(s):// URL.
func signalingOrigin(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	switch p.Scheme {
	case "wss":
		return "https://" + p.Host
	case "ws":
		return "http://" + p.Host
	}
	return ""
}

// pageSessions mints the sessions of the channels a page will play, so that
// its bootstrap connects before the scripts load. Failures are left to the
// page, which then asks the API (and shows the refusal).
func (s *Server) pageSessions(r *http.Request, page string) map[string]Session {
	q := r.URL.Query()
	var chans []string
	switch page {
	case "index":
		if c := q.Get("channel"); c != "" {
			chans = []string{c}
		} else if len(s.cfg.Channels) == 1 {
			chans = s.cfg.Channels
		}
	case "grid":
		for _, c := range q["channel"] {
			if slices.Contains(s.cfg.Channels, c) && !slices.Contains(chans, c) {
				chans = append(chans, c)
			}
		}
		if len(chans) == 0 {
			chans = s.cfg.Channels
		}
	}
	out := make(map[string]Session)
	ctx, cancel := context.WithTimeout(r.Context(), pageMintTimeout)
	defer cancel()
	for _, c := range chans {
		if len(out) == maxPageSessions || !s.chans.served(c) {
			continue
		}
		if ok, _ := s.sessions.allow(s.clientKey(r)); !ok {
			break
		}
		if s.relayed(ctx, c, "") {
			// The bootstrap POSTs its offer to the relay at once.
			s.metrics.inc(s.metrics.relayed, c)
			out[c] = s.relaySession(c)
			continue
		}
		sess, err := s.mint(ctx, c, "")
		if err != nil {
			s.log.Debug("no session for the page; it will ask the API", "channel", c, "err", err)
			continue
		}
		s.metrics.inc(s.metrics.sessions, c)
		out[c] = sess
	}
	return out
}

func (s *Server) writePage(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// publicAssets may be fetched before signing in (the login page's style).
var publicAssets = map[string]bool{"player.css": true}

func (s *Server) handleAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	a, ok := s.assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if !publicAssets[name] {
		if ok, status := s.authorize(w, r); !ok {
			http.Error(w, "sign in first", status)
			return
		}
	}
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("ETag", a.etag)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}
