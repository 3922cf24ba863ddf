// Package control is the control-plane client of Amazon Kinesis Video
// Streams WebRTC: it resolves a signaling channel, asks for its signaling
// endpoints and fetches its ICE (STUN/TURN) servers, the steps every master
// and viewer takes before it dials the signaling WebSocket.
//
// The control-plane calls go through aws-sdk-go-v2 (service/kinesisvideo),
// configured the standard way (credential chain, AWS_REGION,
// AWS_ENDPOINT_URL_KINESIS_VIDEO, AWS_CA_BUNDLE). GetIceServerConfig, whose
// SDK module is not used here, is a REST-JSON POST to the channel's HTTPS
// endpoint signed with the SDK's SigV4 signer.
//
// The client measures the offset between the local clock and the service's
// (from the Date header of every response) and signs with the corrected
// time; Client.Now gives that time to the WSS presign. Failures of the
// service are *APIError values that unwrap to sentinels such as
// ErrChannelNotFound, ErrAccessDenied, ErrThrottled and ErrClockSkew.
//
//	c, err := control.New(ctx, control.Config{Region: "us-west-2"})
//	if err != nil { ... }
//	ch, err := c.ResolveChannel(ctx, "my-channel")
//	if errors.Is(err, control.ErrChannelNotFound) { ... }
//	ep, err := c.Endpoints(ctx, ch.ARN, kvsproto.RoleViewer)
//	ice, err := c.ICEServers(ctx, ch.ARN, ep.HTTPS, "viewer-1")
//
// References:
//   - https://docs.aws.amazon.com/kinesisvideostreams/latest/dg/API_DescribeSignalingChannel.html
//   - https://docs.aws.amazon.com/kinesisvideostreams/latest/dg/API_GetSignalingChannelEndpoint.html
//   - https://docs.aws.amazon.com/kinesisvideostreams/latest/dg/API_signaling_GetIceServerConfig.html
package control
