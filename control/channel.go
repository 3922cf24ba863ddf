package control

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"

	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// Channel describes a signaling channel (DescribeSignalingChannel's
// ChannelInfo).
type Channel struct {
	// ARN is the channel ARN.
	ARN string
	// Name is the channel name.
	Name string
	// Status is CREATING, ACTIVE, UPDATING or DELETING.
	Status kvsproto.ChannelStatus
	// Type is SINGLE_MASTER (or FULL_MESH).
	Type kvsproto.ChannelType
	// MessageTTL is how long the service keeps undelivered messages (0 if
	// the service did not say).
	MessageTTL time.Duration
	// Version is the opaque version of the channel's configuration.
	Version string
	// CreationTime is when the channel was created (zero if unknown).
	CreationTime time.Time
}

// Endpoints are a channel's signaling endpoints for one role.
type Endpoints struct {
	// WSS is the WebSocket endpoint (wss://...) to presign and dial.
	WSS string
	// HTTPS is the channel's HTTPS endpoint (https://...), used for
	// GetIceServerConfig.
	HTTPS string
	// WebRTC is the channel's WEBRTC endpoint (https://...) for the
	// Kinesis Video WebRTC Storage calls; only StorageEndpoints fills it.
	WebRTC string
}

// ResolveChannel finds a channel by name or ARN (a value starting with
// "arn:" is an ARN) with DescribeSignalingChannel. A channel being deleted
// is an error matching ErrChannelDeleting; an unknown one matches
// ErrChannelNotFound.
func (c *Client) ResolveChannel(ctx context.Context, nameOrARN string) (Channel, error) {
	in := &kinesisvideo.DescribeSignalingChannelInput{}
	if strings.HasPrefix(nameOrARN, "arn:") {
		a, err := kvsproto.ParseChannelARN(nameOrARN)
		if err != nil {
			return Channel{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		if a.Region != c.region {
			return Channel{}, fmt.Errorf("%w: channel ARN is in region %s but the client uses %s; set the region to %s",
				ErrInvalidArgument, a.Region, c.region, a.Region)
		}
		in.ChannelARN = aws.String(nameOrARN)
	} else {
		if err := kvsproto.ValidateChannelName(nameOrARN); err != nil {
			return Channel{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		in.ChannelName = aws.String(nameOrARN)
	}
	var out *kinesisvideo.DescribeSignalingChannelOutput
	err := c.retrySkew(func() (err error) {
		out, err = c.kv.DescribeSignalingChannel(ctx, in)
		return wrapSDKError("DescribeSignalingChannel", err)
	})
	if err != nil {
		return Channel{}, err
	}
	if out.ChannelInfo == nil || aws.ToString(out.ChannelInfo.ChannelARN) == "" {
		return Channel{}, fmt.Errorf("%w: DescribeSignalingChannel returned no ChannelInfo.ChannelARN", ErrBadResponse)
	}
	ch := channelFromInfo(out.ChannelInfo)
	if ch.Status == kvsproto.StatusDeleting {
		return ch, fmt.Errorf("%w: %s (%s); wait for the deletion to finish and create it again", ErrChannelDeleting, ch.Name, ch.ARN)
	}
	c.log.Debug("channel resolved", "channel", ch.Name, "arn", ch.ARN, "status", ch.Status)
	return ch, nil
}

func channelFromInfo(ci *types.ChannelInfo) Channel {
	ch := Channel{
		ARN:     aws.ToString(ci.ChannelARN),
		Name:    aws.ToString(ci.ChannelName),
		Status:  kvsproto.ChannelStatus(ci.ChannelStatus),
		Type:    kvsproto.ChannelType(ci.ChannelType),
		Version: aws.ToString(ci.Version),
	}
	if ci.CreationTime != nil {
		ch.CreationTime = *ci.CreationTime
	}
	if ci.SingleMasterConfiguration != nil && ci.SingleMasterConfiguration.MessageTtlSeconds != nil {
		ch.MessageTTL = time.Duration(*ci.SingleMasterConfiguration.MessageTtlSeconds) * time.Second
	}
	if ch.Name == "" {
		if a, err := kvsproto.ParseChannelARN(ch.ARN); err == nil {
			ch.Name = a.Name
		}
	}
	return ch
}

// Endpoints returns the WSS and HTTPS endpoints of a channel for a role
// (GetSignalingChannelEndpoint with Protocols [WSS, HTTPS]).
func (c *Client) Endpoints(ctx context.Context, arn string, role kvsproto.Role) (Endpoints, error) {
	ep, err := c.endpoints(ctx, arn, role, false)
	if err != nil {
		return ep, err
	}
	c.log.Debug("signaling endpoints", "role", role, "wss", ep.WSS, "https", ep.HTTPS)
	return ep, nil
}

// endpoints calls GetSignalingChannelEndpoint for WSS and HTTPS, and
// WEBRTC with webrtc, and checks that each asked-for protocol came back.
// The storage errors (storageError) are mapped only with webrtc: only then
// can the service's InvalidArgumentException mean "no media storage".
func (c *Client) endpoints(ctx context.Context, arn string, role kvsproto.Role, webrtc bool) (Endpoints, error) {
	if _, err := kvsproto.ParseRole(string(role)); err != nil {
		return Endpoints{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if _, err := kvsproto.ParseChannelARN(arn); err != nil {
		return Endpoints{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	protocols := []types.ChannelProtocol{types.ChannelProtocolWss, types.ChannelProtocolHttps}
	if webrtc {
		protocols = append(protocols, types.ChannelProtocolWebrtc)
	}
	in := &kinesisvideo.GetSignalingChannelEndpointInput{
		ChannelARN: aws.String(arn),
		SingleMasterChannelEndpointConfiguration: &types.SingleMasterChannelEndpointConfiguration{
			Protocols: protocols,
			Role:      types.ChannelRole(role),
		},
	}
	var out *kinesisvideo.GetSignalingChannelEndpointOutput
	err := c.retrySkew(func() (err error) {
		out, err = c.kv.GetSignalingChannelEndpoint(ctx, in)
		err = wrapSDKError("GetSignalingChannelEndpoint", err)
		if webrtc {
			err = storageError(err)
		}
		return err
	})
	if err != nil {
		return Endpoints{}, err
	}
	var ep Endpoints
	for _, item := range out.ResourceEndpointList {
		v := aws.ToString(item.ResourceEndpoint)
		switch {
		case strings.EqualFold(string(item.Protocol), string(kvsproto.ProtocolWSS)) && ep.WSS == "":
			ep.WSS = v
		case strings.EqualFold(string(item.Protocol), string(kvsproto.ProtocolHTTPS)) && ep.HTTPS == "":
			ep.HTTPS = v
		case strings.EqualFold(string(item.Protocol), string(kvsproto.ProtocolWebRTC)) && ep.WebRTC == "":
			ep.WebRTC = v
		}
	}
	if ep.WSS == "" || ep.HTTPS == "" {
		return ep, fmt.Errorf("%w: GetSignalingChannelEndpoint returned WSS %q and HTTPS %q; both are needed", ErrBadResponse, ep.WSS, ep.HTTPS)
	}
	if webrtc && ep.WebRTC == "" {
		return ep, fmt.Errorf("%w: GetSignalingChannelEndpoint returned no WEBRTC endpoint for a channel with media storage", ErrBadResponse)
	}
	return ep, nil
}

// CreateChannel creates a SINGLE_MASTER signaling channel and returns its
// ARN. ttl is the message TTL in whole seconds from 5 s to 120 s; 0 leaves
// it to the service (60 s). An existing name matches ErrResourceInUse.
func (c *Client) CreateChannel(ctx context.Context, name string, ttl time.Duration) (string, error) {
	if err := kvsproto.ValidateChannelName(name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	in := &kinesisvideo.CreateSignalingChannelInput{
		ChannelName: aws.String(name),
		ChannelType: types.ChannelTypeSingleMaster,
	}
	if ttl != 0 {
		secs := int(ttl / time.Second)
		if ttl%time.Second != 0 {
			return "", fmt.Errorf("%w: message TTL %v is not a whole number of seconds", ErrInvalidArgument, ttl)
		}
		if err := kvsproto.ValidateMessageTTL(secs); err != nil {
			return "", fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		in.SingleMasterConfiguration = &types.SingleMasterConfiguration{MessageTtlSeconds: aws.Int32(int32(secs))}
	}
	var out *kinesisvideo.CreateSignalingChannelOutput
	err := c.retrySkew(func() (err error) {
		out, err = c.kv.CreateSignalingChannel(ctx, in)
		return wrapSDKError("CreateSignalingChannel", err)
	})
	if err != nil {
		return "", err
	}
	arn := aws.ToString(out.ChannelARN)
	if arn == "" {
		return "", fmt.Errorf("%w: CreateSignalingChannel returned no ChannelARN", ErrBadResponse)
	}
	c.log.Debug("channel created", "channel", name, "arn", arn)
	return arn, nil
}

// DeleteChannel deletes a signaling channel by ARN (its latest version).
func (c *Client) DeleteChannel(ctx context.Context, arn string) error {
	if _, err := kvsproto.ParseChannelARN(arn); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return c.retrySkew(func() error {
		_, err := c.kv.DeleteSignalingChannel(ctx, &kinesisvideo.DeleteSignalingChannelInput{ChannelARN: aws.String(arn)})
		return wrapSDKError("DeleteSignalingChannel", err)
	})
}
