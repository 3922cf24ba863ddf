// Package sigv4 signs and verifies AWS Signature Version 4 requests for
// Amazon Kinesis Video Streams (signing name "kinesisvideo").
//
// It is a small, stdlib-only implementation with two sides:
//
//   - Clients presign the WSS signaling URL with [PresignURL] exactly as the
//     official KVS WebRTC JS SDK (SigV4RequestSigner.getSignedURL) does, and can
//     sign plain HTTP requests with [SignRequest] when the AWS SDK is not used.
//   - The emulator checks presigned WSS upgrade requests with
//     [Verifier.VerifyPresigned] and header-signed control-plane requests (AWS
//     CLI/botocore, aws-sdk-go-v2, aws-sdk-js in node and browsers, the C SDK)
//     with [Verifier.VerifyRequest]. Every failure is an [*Error] that carries
//     the AWS error code and HTTP status to answer with, and wraps one of the
//     sentinel errors (ErrSignatureMismatch, ErrClockSkew, ...).
//
// Presigning a viewer URL:
//
//	u, err := sigv4.PresignURL("wss://m-1234.kinesisvideo.us-west-2.amazonaws.com",
//		map[string]string{
//			"X-Amz-ChannelARN": channelARN,
//			"X-Amz-ClientId":   "viewer-1",
//		},
//		creds, "us-west-2", time.Now(), sigv4.DefaultPresignExpiry)
//
// Verifying on the server side:
//
//	v := &sigv4.Verifier{Lookup: func(id string) (sigv4.Credentials, bool) {
//		c, ok := keys[id]
//		return c, ok
//	}}
//	res, err := v.VerifyPresigned(r)
//	var se *sigv4.Error
//	if errors.As(err, &se) {
//		// answer se.HTTPStatus() with x-amzn-ErrorType: se.Code and {"Message": se.Message}
//	}
//
// Credentials implement [slog.LogValuer] and [fmt.Stringer] and never print the
// secret key or the session token. Presigned URLs contain the session token;
// do not log them verbatim.
//
// References: the AWS SigV4 documentation ("Create a signed AWS API request"),
// and the KVS WebRTC developer guide (ConnectAsMaster / ConnectAsViewer).
package sigv4
