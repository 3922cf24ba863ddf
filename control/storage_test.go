package control_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/kvstest"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// storageEnv starts the emulator with a channel "cam" linked to a stream,
// and returns the environment, the channel's ARN and the stream's ARN.
func storageEnv(t *testing.T, cfg emulator.Config) (*kvstest.Env, string, string) {
	t.Helper()
	kvstest.IsolateEnv(t)
	cfg.Channels = append(cfg.Channels, "cam", "plain")
	env := kvstest.New(t, kvstest.Options{Emulator: cfg})
	ctx := context.Background()
	kv := kinesisvideo.NewFromConfig(env.AWSConfig)
	arn := env.ChannelARN(t, "cam")
	st, err := kv.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String("cam-rec"), DataRetentionInHours: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.UpdateMediaStorageConfiguration(ctx, &kinesisvideo.UpdateMediaStorageConfigurationInput{
		ChannelARN:                aws.String(arn),
		MediaStorageConfiguration: &types.MediaStorageConfiguration{Status: types.MediaStorageConfigurationStatusEnabled, StreamARN: st.StreamARN},
	}); err != nil {
		t.Fatal(err)
	}
	return env, arn, aws.ToString(st.StreamARN)
}

// dialAs opens a signaling connection to the channel.
func dialAs(t *testing.T, env *kvstest.Env, arn string, role kvsproto.Role, clientID string) *signaling.Client {
	t.Helper()
	ctx := context.Background()
	ep, err := env.Control.Endpoints(ctx, arn, role)
	if err != nil {
		t.Fatal(err)
	}
	c, err := signaling.Dial(ctx, signaling.Config{
		Endpoint: ep.WSS, ChannelARN: arn, Role: role, ClientID: clientID,
		Region: env.Control.Region(), Credentials: env.Control.SigV4Credentials, Now: env.Control.Now,
		HTTPClient: env.HTTPClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStorageCalls: the WEBRTC endpoint, the media storage configuration
// and both joins succeed on a linked channel with the joiner connected.
func TestStorageCalls(t *testing.T) {
	env, arn, stream := storageEnv(t, emulator.Config{})
	ctx := context.Background()
	c := env.Control

	ms, err := c.MediaStorage(ctx, arn)
	if err != nil || !ms.Enabled || ms.StreamARN != stream {
		t.Fatalf("MediaStorage = %+v, %v; want enabled with %s", ms, err, stream)
	}
	ep, err := c.StorageEndpoints(ctx, arn, kvsproto.RoleMaster)
	if err != nil || ep.WebRTC == "" || ep.WSS == "" || ep.HTTPS == "" {
		t.Fatalf("StorageEndpoints = %+v, %v", ep, err)
	}
	dialAs(t, env, arn, kvsproto.RoleMaster, "")
	if err := c.JoinStorageSession(ctx, ep.WebRTC, arn); err != nil {
		t.Fatalf("JoinStorageSession: %v", err)
	}
	vep, err := c.StorageEndpoints(ctx, arn, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	dialAs(t, env, arn, kvsproto.RoleViewer, "v1")
	if err := c.JoinStorageSessionAsViewer(ctx, vep.WebRTC, arn, "v1"); err != nil {
		t.Fatalf("JoinStorageSessionAsViewer: %v", err)
	}
	ss := env.Server.StorageSessions()
	if len(ss) != 1 || ss[0].MasterJoins != 1 || len(ss[0].Viewers) != 1 || ss[0].Viewers[0].ClientID != "v1" {
		t.Fatalf("storage sessions = %+v", ss)
	}
}

// TestStorageErrors: every way a join fails gets the service's error,
// classified with the sentinel that says what to fix.
func TestStorageErrors(t *testing.T) {
	env, arn, stream := storageEnv(t, emulator.Config{StorageMaxViewers: 1})
	ctx := context.Background()
	c := env.Control
	ep, err := c.StorageEndpoints(ctx, arn, kvsproto.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, err error, want error, code string, retry bool, words ...string) {
		t.Helper()
		var ae *control.APIError
		if !errors.Is(err, want) || !errors.As(err, &ae) || (code != "" && ae.Code != code) {
			t.Errorf("%s: %v, want %v (%s)", name, err, want, code)
			return
		}
		if control.JoinRetryable(err) != retry {
			t.Errorf("%s: JoinRetryable = %v", name, !retry)
		}
		for _, w := range words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", name, err, w)
			}
		}
	}

	// No master connected.
	err = c.JoinStorageSession(ctx, ep.WebRTC, arn)
	check("no master", err, control.ErrJoinerNotConnected, kvsproto.ErrCodeResourceNotFound, false, "master")
	// A viewer that is not connected.
	err = c.JoinStorageSessionAsViewer(ctx, ep.WebRTC, arn, "ghost")
	check("viewer not connected", err, control.ErrJoinerNotConnected, kvsproto.ErrCodeResourceNotFound, false, "ghost")
	// A bad client id: refused before any request.
	err = c.JoinStorageSessionAsViewer(ctx, ep.WebRTC, arn, "bad id!")
	if !errors.Is(err, control.ErrInvalidArgument) || control.JoinRetryable(err) {
		t.Errorf("bad client id: %v", err)
	}

	// The viewer limit (1 here).
	dialAs(t, env, arn, kvsproto.RoleViewer, "v1")
	dialAs(t, env, arn, kvsproto.RoleViewer, "v2")
	if err := c.JoinStorageSessionAsViewer(ctx, ep.WebRTC, arn, "v1"); err != nil {
		t.Fatal(err)
	}
	err = c.JoinStorageSessionAsViewer(ctx, ep.WebRTC, arn, "v2")
	check("viewer limit", err, control.ErrStorageViewerLimit, kvsproto.ErrCodeClientLimitExceeded, false, "maximum of 1 viewers")

	// A channel without media storage: no WEBRTC endpoint, no join.
	plain := env.ChannelARN(t, "plain")
	_, err = c.StorageEndpoints(ctx, plain, kvsproto.RoleViewer)
	check("endpoint of a plain channel", err, control.ErrStorageNotConfigured, kvsproto.ErrCodeInvalidArgument, false, "media storage")
	err = c.JoinStorageSession(ctx, ep.WebRTC, plain)
	check("join of a plain channel", err, control.ErrStorageNotConfigured, kvsproto.ErrCodeInvalidArgument, false, "media storage")
	if ms, err := c.MediaStorage(ctx, plain); err != nil || ms.Enabled {
		t.Errorf("MediaStorage(plain) = %+v, %v", ms, err)
	}

	// The stream deleted.
	kv := kinesisvideo.NewFromConfig(env.AWSConfig)
	if _, err := kv.DeleteStream(ctx, &kinesisvideo.DeleteStreamInput{StreamARN: aws.String(stream)}); err != nil {
		t.Fatal(err)
	}
	err = c.JoinStorageSessionAsViewer(ctx, ep.WebRTC, arn, "v1")
	check("stream deleted", err, control.ErrStreamNotFound, kvsproto.ErrCodeResourceNotFound, false, "stream")

	// Bad input refused locally.
	if err := c.JoinStorageSession(ctx, "ftp://x", arn); !errors.Is(err, control.ErrInvalidArgument) {
		t.Errorf("bad endpoint: %v", err)
	}
	if err := c.JoinStorageSession(ctx, ep.WebRTC, "not-an-arn"); !errors.Is(err, control.ErrInvalidArgument) {
		t.Errorf("bad ARN: %v", err)
	}
}

// TestJoinRetryable: throttling, network failures and 5xx are retried;
// the viewer limit is not.
func TestJoinRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&control.APIError{Code: kvsproto.ErrCodeClientLimitExceeded, StatusCode: 400}, true},
		{&control.APIError{Code: "InternalFailure", StatusCode: 500}, true},
		{&control.APIError{Code: kvsproto.ErrCodeInvalidArgument, StatusCode: 400}, false},
		{context.DeadlineExceeded, true},
		{errors.New("other"), false},
	} {
		if got := control.JoinRetryable(tc.err); got != tc.want {
			t.Errorf("JoinRetryable(%v) = %v", tc.err, got)
		}
	}
}
