// Package emulator is a local Amazon Kinesis Video Streams WebRTC signaling
// service that the official AWS clients accept: the kinesisvideo control plane
// (REST-JSON, SigV4), the signaling HTTPS API (GetIceServerConfig backed by a
// real embedded TURN server, SendAlexaOfferToMaster), and the WSS data plane
// (ConnectAsMaster / ConnectAsViewer with presigned URLs), the Kinesis video
// stream control plane and media storage configuration with the WebRTC
// Storage API (JoinStorageSession, JoinStorageSessionAsViewer; the storage
// session's media runs in Config.StorageMedia, which package storage
// implements), all on one listener, plus an admin API under /_kvsrtc/ for
// fault injection.
//
// It is meant to be used like net/http/httptest in other programs' tests,
// and by the "kvsrtc local" command:
//
//	srv, err := emulator.Start(ctx, emulator.Config{Channels: []string{"demo"}})
//	if err != nil {
//		return err
//	}
//	defer srv.Close()
//	// Point an AWS SDK at srv.URL() with region srv.Region() and
//	// credentials srv.Credentials(); srv.Env() lists the same as
//	// environment variables.
//
// Behaviour the real service does not document is chosen in one place each
// and described in docs/EMULATOR.md. The package shares only the wire types
// (kvsproto) and the SigV4 code (sigv4) with the kvsrtc clients, so that a
// client bug cannot hide behind the same bug here.
package emulator
