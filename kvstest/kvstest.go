// Package kvstest runs a local Kinesis Video Streams WebRTC service for
// tests, the way net/http/httptest runs an HTTP server: one call starts
// "kvsrtc local" (package emulator) in-process on a free loopback port and
// returns everything that talks to it, already configured: an aws.Config
// for aws-sdk-go-v2, a kvsrtc control client, an HTTP client that trusts
// the service's certificate and the environment variables for
// subprocesses (the AWS CLI, the C or JS SDK, another kvsrtc). It can also
// run a master (package master, with the built-in test pattern) on a
// channel, so that a viewer under test has something to watch.
//
// Everything is stopped by the test's cleanup:
//
//	func TestMyViewer(t *testing.T) {
//		env := kvstest.New(t, kvstest.Options{
//			Emulator: emulator.Config{Channels: []string{"cam"}},
//			Master:   &kvstest.MasterOptions{Channel: "cam"},
//		})
//		kv := kinesisvideo.NewFromConfig(env.AWSConfig)
//		// ... exercise your code against kv, or with env.Control ...
//		cmd := exec.Command("my-viewer", "--channel", "cam")
//		cmd.Env = append(os.Environ(), env.Environ()...)
//	}
//
// Start and Env.Close do the same outside a test, e.g. for a service that
// all of a package's tests share, started in TestMain. Env.Setenv points
// the test process's own AWS environment at the service, and IsolateEnv
// hides the machine's AWS settings from code that loads the default
// configuration.
//
// The service accepts only its own credentials (emulator.DefaultCredentials
// unless Options.Emulator.Credentials says otherwise) and listens on a
// loopback port unless Options.Emulator.Addr says otherwise; the control client hands out no public STUN server, and
// the master gathers loopback ICE candidates only, so a test's traffic
// stays on the machine.
package kvstest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/storage"
)

// Options configures New and Start. The zero value starts a service with the
// emulator's defaults (no channels, TURN on, plain http and ws).
type Options struct {
	// Emulator is passed to emulator.Start: channels to create
	// (Channels), TLS, quotas, faults, timeouts, the service's Logger...
	// Its Addr defaults to a free loopback port, as always.
	Emulator emulator.Config
	// ControlLogger receives the control client's log; nil discards it.
	ControlLogger *slog.Logger
	// Master, when set, starts a master on Master.Channel (created if it
	// is a name not in Emulator.Channels) and waits until it is ready
	// before New returns; Env.Master is its handle and Close stops it.
	Master *MasterOptions
}

// Env is a running service and the clients configured for it. Its fields
// must not be changed.
type Env struct {
	// Server is the running service (faults, clock skew, statistics...).
	Server *emulator.Server
	// Control is a kvsrtc control client for Server, with STUN off. It
	// uses HTTPClient's transport, with control.DefaultRequestTimeout,
	// unless AWS_CA_BUNDLE is set (see IsolateEnv); with
	// Options.Emulator.TLS, New fails while AWS_CA_BUNDLE is set.
	Control *control.Client
	// AWSConfig points aws-sdk-go-v2 clients (kinesisvideo,
	// kinesisvideosignaling) at Server: its region, its credentials, its
	// URL as BaseEndpoint and HTTPClient. It does not depend on the
	// machine's AWS configuration.
	AWSConfig aws.Config
	// HTTPClient talks to Server, trusting its certificate with TLS. It
	// has no timeout (it also serves WebSocket handshakes) and uses no
	// proxy. Close closes its idle connections; so does its
	// CloseIdleConnections, e.g. before a goroutine leak check.
	HTTPClient *http.Client
	// Master is the master started for Options.Master, or nil.
	Master *Master
	// Storage runs the storage sessions' media (WebRTC ingestion,
	// Multiviewer) with loopback candidates only, unless
	// Options.Emulator.StorageMedia was set (then it is nil).
	Storage *storage.Engine

	opts Options
	tr   *http.Transport // HTTPClient's
}

// New starts a service as opts says (see Start) for the test t and
// registers its Close with t.Cleanup. It fails the test (t.Fatal) if the
// service cannot start; the cleanup reports (t.Error) what Close returns.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	e, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("kvstest: %v", err)
		}
	})
	return e
}

// Start starts a service as opts says, outside a test (in TestMain, an
// example or a program); the caller must Close it. Tests use New.
func Start(opts Options) (*Env, error) {
	cfg := opts.Emulator
	cfg.Channels = append([]string(nil), cfg.Channels...)
	if m := opts.Master; m != nil && m.Channel != "" && !isARN(m.Channel) && !slices.Contains(cfg.Channels, m.Channel) {
		cfg.Channels = append(cfg.Channels, m.Channel)
	}
	var engine *storage.Engine
	if cfg.StorageMedia == nil {
		var err error
		engine, err = storage.New(storage.Config{RTC: rtc.Config{LoopbackOnly: true}, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("kvstest: %w", err)
		}
		cfg.StorageMedia = engine
	}
	srv, err := emulator.Start(context.Background(), cfg)
	if err != nil {
		if engine != nil {
			_ = engine.Close()
		}
		return nil, fmt.Errorf("kvstest: starting the emulator: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if pool := srv.CertPool(); pool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	e := &Env{Server: srv, HTTPClient: &http.Client{Transport: tr}, Storage: engine, opts: opts, tr: tr}
	c := srv.Credentials()
	e.AWSConfig = aws.Config{
		Region:       srv.Region(),
		Credentials:  credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken),
		HTTPClient:   e.HTTPClient,
		BaseEndpoint: aws.String(srv.URL()),
	}
	if e.Control, err = e.newControl(); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	if opts.Master != nil {
		if e.Master, err = e.startMaster(*opts.Master); err != nil {
			return nil, errors.Join(err, e.Close())
		}
	}
	return e, nil
}

// Close stops the master started for Options.Master, then the service,
// and returns the first errors of either (a master's Run error only
// unless its IgnoreRunError). Masters started with StartMaster are
// stopped by their test's cleanup, which runs before Close when the Env
// comes from New. Close may be called more than once.
func (e *Env) Close() error {
	var errs []error
	if m := e.Master; m != nil {
		if err := m.Stop(); err != nil && !m.ignoreErr {
			errs = append(errs, fmt.Errorf("master on %s: %w", m.Channel, err))
		}
	}
	e.tr.CloseIdleConnections()
	// The storage sessions first: ending one writes its last fragment
	// into the archive, which the server still holds.
	if e.Storage != nil {
		if err := e.Storage.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the storage sessions: %w", err))
		}
	}
	if err := e.Server.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the emulator: %w", err))
	}
	return errors.Join(errs...)
}

// NewControl returns another control client for the service, configured
// like Env.Control and then changed by each mutate in turn (e.g. other
// credentials, a clock, a request timeout). It fails the test if
// control.New does.
func (e *Env) NewControl(t testing.TB, mutate ...func(*control.Config)) *control.Client {
	t.Helper()
	ctl, err := e.newControl(mutate...)
	if err != nil {
		t.Fatal(err)
	}
	return ctl
}

func (e *Env) newControl(mutate ...func(*control.Config)) (*control.Client, error) {
	cfg := control.Config{
		Region:      e.AWSConfig.Region,
		EndpointURL: e.Server.URL(),
		Credentials: e.AWSConfig.Credentials,
		STUNURL:     control.STUNNone,
		Logger:      e.opts.ControlLogger,
	}
	// The AWS SDK refuses a plain *http.Client while AWS_CA_BUNDLE is set:
	// control then builds its own client, which is fine over http but
	// cannot trust the service's own certificate.
	if os.Getenv("AWS_CA_BUNDLE") == "" {
		cfg.HTTPClient = &http.Client{Transport: e.tr, Timeout: control.DefaultRequestTimeout}
	} else if e.Server.CertPool() != nil {
		return nil, fmt.Errorf("kvstest: control client: AWS_CA_BUNDLE is set in the environment, so the AWS SDK would trust only that bundle and not the emulator's certificate: call kvstest.IsolateEnv(t) before New, or unset AWS_CA_BUNDLE")
	}
	for _, m := range mutate {
		m(&cfg)
	}
	ctl, err := control.New(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("kvstest: control client: %w", err)
	}
	return ctl, nil
}

// ChannelARN returns the ARN of the channel named name, failing the test
// if there is no such channel.
func (e *Env) ChannelARN(t testing.TB, name string) string {
	t.Helper()
	ch, err := e.Control.ResolveChannel(context.Background(), name)
	if err != nil {
		t.Fatalf("kvstest: channel %q: %v", name, err)
	}
	return ch.ARN
}

// Environ returns the environment that points AWS tools and SDKs in a
// subprocess at the service, as KEY=VALUE: AWS_ENDPOINT_URL_KINESIS_VIDEO,
// AWS_ENDPOINT_URL_KINESIS_VIDEO_SIGNALING, ..._ARCHIVED_MEDIA,
// ..._WEBRTC_STORAGE, AWS_REGION,
// AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, when
// they apply, AWS_SESSION_TOKEN and AWS_CA_BUNDLE. Append it to
// os.Environ(): later entries win.
func (e *Env) Environ() []string { return e.Server.Env() }

// Setenv points this process's AWS settings at the service for the rest
// of the test, for code under test that loads the default AWS
// configuration itself (a CLI run in-process, say): IsolateEnv, then
// t.Setenv for each variable of Environ. Like t.Setenv it cannot be used
// in parallel tests.
func (e *Env) Setenv(t testing.TB) {
	t.Helper()
	IsolateEnv(t)
	for _, kv := range e.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// awsEnvVars are the variables IsolateEnv clears: any of them could point
// an SDK at another account, profile or endpoint.
var awsEnvVars = []string{
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS_VIDEO", "AWS_ENDPOINT_URL_KINESIS_VIDEO_SIGNALING",
	"AWS_ENDPOINT_URL_KINESIS_VIDEO_ARCHIVED_MEDIA", "AWS_ENDPOINT_URL_KINESIS_VIDEO_WEBRTC_STORAGE",
	"AWS_ENDPOINT_URL_STS", "AWS_CA_BUNDLE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
	"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
}

// IsolateEnv hides the machine's AWS settings (profiles, credentials,
// regions, endpoints, shared config files, the EC2 metadata service) from
// the rest of the test, so that code that loads the default AWS
// configuration sees only what the test sets. Like t.Setenv it cannot be
// used in parallel tests; the settings come back after the test.
func IsolateEnv(t testing.TB) {
	t.Helper()
	for _, k := range awsEnvVars {
		t.Setenv(k, "")
		if err := os.Unsetenv(k); err != nil {
			t.Fatalf("kvstest: unsetting %s: %v", k, err)
		}
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func isARN(s string) bool {
	_, err := kvsproto.ParseChannelARN(s)
	return err == nil
}

// Logger returns a logger for one side of a test (its component, e.g.
// "emulator", "master"), or nil (discard) unless the environment variable
// KVSRTC_TEST_LOG names a level ("debug", "info", "warn", "error"; anything
// else means debug). It writes to t's output, or to standard error when t
// is nil (TestMain).
func Logger(t testing.TB, component string) *slog.Logger {
	v := os.Getenv("KVSRTC_TEST_LOG")
	if v == "" {
		return nil
	}
	lvl := slog.LevelDebug
	_ = lvl.UnmarshalText([]byte(v))
	var w io.Writer = os.Stderr
	if t != nil {
		w = t.Output()
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})).With("component", component)
}
