package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// WebRTC ingestion and Multiviewer: the channel's media storage
// configuration, its WEBRTC endpoint, and the Kinesis Video WebRTC Storage
// calls (JoinStorageSession, JoinStorageSessionAsViewer) made on it.

// Sentinel errors of the storage calls. A failed join is an *APIError
// wrapped with one of them when the service's answer says which (the
// message decides: the service uses InvalidArgumentException,
// ResourceNotFoundException and ClientLimitExceededException for several
// things each).
var (
	// ErrStorageNotConfigured: the channel has no media storage
	// configuration (Status DISABLED), so it has no WEBRTC endpoint and no
	// storage session: link it to a stream with
	// UpdateMediaStorageConfiguration.
	ErrStorageNotConfigured = errors.New("control: the channel is not configured for media storage")
	// ErrStreamNotFound: the stream the channel stores its media in does
	// not exist (deleted).
	ErrStreamNotFound = errors.New("control: the channel's storage stream was not found")
	// ErrStorageViewerLimit: the storage session has its maximum of
	// viewers (JoinStorageSessionAsViewer's ClientLimitExceededException
	// "maximum of N viewers"); unlike throttling, retrying at once does
	// not help.
	ErrStorageViewerLimit = errors.New("control: the storage session has its maximum number of viewers")
	// ErrJoinerNotConnected: the join came before the caller's signaling
	// connection (no master connected for JoinStorageSession, no viewer
	// with that client id for JoinStorageSessionAsViewer); the storage
	// session sends its offer over that connection.
	ErrJoinerNotConnected = errors.New("control: no signaling connection to join the storage session with")
)

// MediaStorage is a channel's media storage configuration
// (DescribeMediaStorageConfiguration).
type MediaStorage struct {
	// Enabled reports Status ENABLED.
	Enabled bool
	// StreamARN is the stream the channel's media is stored in (empty when
	// not enabled).
	StreamARN string
}

// MediaStorage returns a channel's media storage configuration.
func (c *Client) MediaStorage(ctx context.Context, channelARN string) (MediaStorage, error) {
	if _, err := kvsproto.ParseChannelARN(channelARN); err != nil {
		return MediaStorage{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	var out *kinesisvideo.DescribeMediaStorageConfigurationOutput
	err := c.retrySkew(func() (err error) {
		out, err = c.kv.DescribeMediaStorageConfiguration(ctx, &kinesisvideo.DescribeMediaStorageConfigurationInput{ChannelARN: aws.String(channelARN)})
		return wrapSDKError("DescribeMediaStorageConfiguration", err)
	})
	if err != nil {
		return MediaStorage{}, err
	}
	var ms MediaStorage
	if m := out.MediaStorageConfiguration; m != nil && m.Status == types.MediaStorageConfigurationStatusEnabled {
		ms = MediaStorage{Enabled: true, StreamARN: aws.ToString(m.StreamARN)}
	}
	return ms, nil
}

// StorageEndpoints returns a channel's WSS, HTTPS and WEBRTC endpoints for
// a role (GetSignalingChannelEndpoint with Protocols [WSS, HTTPS, WEBRTC],
// as the official JS SDK asks when the channel ingests media). A channel
// without media storage fails with an error matching
// ErrStorageNotConfigured.
func (c *Client) StorageEndpoints(ctx context.Context, arn string, role kvsproto.Role) (Endpoints, error) {
	ep, err := c.endpoints(ctx, arn, role, true)
	if err != nil {
		return ep, err
	}
	c.log.Debug("storage endpoints", "role", role, "wss", ep.WSS, "https", ep.HTTPS, "webrtc", ep.WebRTC)
	return ep, nil
}

// JoinStorageSession asks the channel's storage session to connect to the
// master (POST /joinStorageSession on the WEBRTC endpoint). The answer is
// asynchronous: success only means the request was taken; the session's
// SDP offer comes later over the master's signaling connection, which must
// be open. Errors are *APIError, wrapped with ErrStorageNotConfigured,
// ErrStreamNotFound or ErrJoinerNotConnected when the service says so;
// JoinRetryable tells which ones to retry.
func (c *Client) JoinStorageSession(ctx context.Context, webrtcEndpoint, channelARN string) error {
	if _, err := kvsproto.ParseChannelARN(channelARN); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	body, err := json.Marshal(kvsproto.JoinStorageSessionInput{ChannelArn: channelARN})
	if err != nil {
		return err
	}
	return c.storageCall(ctx, "JoinStorageSession", webrtcEndpoint, kvsproto.PathJoinStorageSession, body)
}

// JoinStorageSessionAsViewer asks the channel's storage session to connect
// to a viewer (POST /joinStorageSessionAsViewer on the WEBRTC endpoint)
// whose signaling connection with clientID is open; the session's SDP
// offer comes over it. Errors as for JoinStorageSession, plus
// ErrStorageViewerLimit.
func (c *Client) JoinStorageSessionAsViewer(ctx context.Context, webrtcEndpoint, channelARN, clientID string) error {
	if _, err := kvsproto.ParseChannelARN(channelARN); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if err := kvsproto.ValidateClientID(clientID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	body, err := json.Marshal(kvsproto.JoinStorageSessionAsViewerInput{ChannelArn: channelARN, ClientID: clientID})
	if err != nil {
		return err
	}
	return c.storageCall(ctx, "JoinStorageSessionAsViewer", webrtcEndpoint, kvsproto.PathJoinStorageSessionAsViewer, body)
}

// storageCall POSTs a Kinesis Video WebRTC Storage request, signed with
// package sigv4 (service kinesisvideo) and the corrected clock, and retries
// once after a clock-skew refusal. The answer's body ({}) is not used.
func (c *Client) storageCall(ctx context.Context, op, endpoint, path string, body []byte) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("%w: WEBRTC endpoint %q is not an https:// URL (StorageEndpoints returns it)", ErrInvalidArgument, endpoint)
	}
	target := strings.TrimRight(endpoint, "/") + path
	err = c.retrySkew(func() error { return c.postJSON(ctx, op, "KVS WebRTC storage endpoint", target, body, nil) })
	if err == nil {
		c.log.Debug("storage session joined", "op", op)
	}
	return storageError(err)
}

// storageError wraps an *APIError of a storage call with the sentinel its
// message names; other errors are returned as they are.
func storageError(err error) error {
	var ae *APIError
	if err == nil || !errors.As(err, &ae) {
		return err
	}
	if s := storageSentinel(ae.Code, ae.Message); s != nil {
		return fmt.Errorf("%w: %w", s, err)
	}
	return err
}

// storageSentinel classifies a storage call's error answer. The codes are
// shared with other conditions, so the message decides.
func storageSentinel(code, msg string) error {
	m := strings.ToLower(msg)
	switch code {
	case kvsproto.ErrCodeInvalidArgument:
		if strings.Contains(m, "media storage") || strings.Contains(m, "storage configuration") || strings.Contains(m, "not configured") {
			return ErrStorageNotConfigured
		}
	case kvsproto.ErrCodeResourceNotFound:
		switch {
		case strings.Contains(m, "stream"):
			return ErrStreamNotFound
		case strings.Contains(m, "connected") || strings.Contains(m, "no master"):
			return ErrJoinerNotConnected
		}
	case kvsproto.ErrCodeClientLimitExceeded:
		if strings.Contains(m, "maximum") && strings.Contains(m, "viewer") {
			return ErrStorageViewerLimit
		}
	}
	return nil
}

// JoinRetryable reports whether a failed join is worth repeating, as the
// official JS SDK decides: throttling (but not the viewer limit), a
// network failure or timeout, a 5xx answer. Everything else (no storage
// configuration, stream or channel missing, access denied, bad arguments)
// stays wrong until someone changes something.
func JoinRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrStorageViewerLimit) {
		return false
	}
	if errors.Is(err, ErrThrottled) || errors.Is(err, ErrUnreachable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode >= 500
	}
	return false
}
