package player

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// callbackTimeout bounds one call of an authorization callback.
const callbackTimeout = 5 * time.Second

// maxCallbackBody bounds a callback's answer.
const maxCallbackBody = 64 << 10

// CallbackAuthorizer returns an AuthorizeFunc that asks the app: for each
// API request it sends GET callbackURL with the request's Cookie and
// Authorization headers (and X-Forwarded-For: the client's address), and
// the app answers as it would for its own pages:
//
//	200 {"channels": ["front-door", ...]}   allowed, for these channels
//	401 (body {"expired": true} optional)   not signed in (or expired)
//	403                                     signed in, no camera allowed
//
// Anything else, or no answer within 5 s, is ErrAuthUnavailable. client
// nil is http.DefaultClient; redirects are not followed.
func CallbackAuthorizer(callbackURL string, client *http.Client) (AuthorizeFunc, error) {
	u, err := url.Parse(callbackURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, invalid("auth callback", "%q is not an http:// or https:// URL (for example http://127.0.0.1:3000/kvs-auth)", callbackURL)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if client != nil {
		c.Transport, c.Jar = client.Transport, client.Jar
	}
	return func(r *http.Request) ([]string, error) {
		ctx, cancel := context.WithTimeout(r.Context(), callbackTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, callbackURL, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuthUnavailable, err)
		}
		for _, h := range []string{"Cookie", "Authorization"} {
			for _, v := range r.Header.Values(h) {
				req.Header.Add(h, v)
			}
		}
		if a, ok := remoteAddr(r); ok {
			req.Header.Set("X-Forwarded-For", a.String())
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAuthUnavailable, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxCallbackBody))
		if err != nil {
			return nil, fmt.Errorf("%w: reading the callback's answer: %w", ErrAuthUnavailable, err)
		}
		var ans struct {
			Channels []string `json:"channels"`
			Expired  bool     `json:"expired"`
		}
		switch resp.StatusCode {
		case http.StatusOK:
			if err := json.Unmarshal(body, &ans); err != nil {
				return nil, fmt.Errorf("%w: the callback answered 200 without {\"channels\": [...]}: %w", ErrAuthUnavailable, err)
			}
			return ans.Channels, nil
		case http.StatusUnauthorized:
			if json.Unmarshal(body, &ans) == nil && ans.Expired {
				return nil, fmt.Errorf("%w (the callback says so)", ErrExpired)
			}
			return nil, fmt.Errorf("%w (the callback says so)", ErrUnauthorized)
		case http.StatusForbidden:
			return nil, fmt.Errorf("%w (the callback says so)", ErrForbidden)
		}
		return nil, fmt.Errorf("%w: the callback answered HTTP %d", ErrAuthUnavailable, resp.StatusCode)
	}, nil
}
