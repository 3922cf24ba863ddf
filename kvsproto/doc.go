// Package kvsproto holds the wire types of Amazon Kinesis Video Streams (KVS)
// WebRTC signaling and the validation rules that both sides of the protocol
// share: client and server WebSocket messages, the REST-JSON shapes of the
// control plane and of the signaling HTTPS API, channel ARNs, client ids,
// channel names and correlation ids.
//
// The package does no I/O and imports only the standard library, so the
// clients (control, signaling, viewer, master) and the independent service
// implementation (emulator) can share it without sharing behaviour.
//
// Decoding a frame the service received from a client:
//
//	msg, err := kvsproto.DecodeClientMessage(frame)
//	if err != nil { ... } // *kvsproto.ValidationError or ErrMalformedMessage
//	switch msg.Action {
//	case kvsproto.ActionSDPOffer: ...
//	}
//
// References:
//   - https://docs.aws.amazon.com/kinesisvideostreams-webrtc-dg/latest/devguide/kvswebrtc-websocket-apis.html
//   - https://docs.aws.amazon.com/kinesisvideostreams/latest/dg/API_Operations_Amazon_Kinesis_Video_Streams.html
package kvsproto
