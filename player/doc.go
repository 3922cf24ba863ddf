// Package player is kvsrtc's web player: an HTTP server that shows live
// video from KVS WebRTC cameras in any browser while every long-lived
// secret stays on the server.
//
// The pages, scripts and styles are embedded in the binary (go:embed);
// nothing is fetched from a CDN and no AWS SDK runs in the browser. Each
// connection attempt uses a session: the server, holding the AWS
// credentials, takes the channel's ARN, endpoints and ICE servers from
// caches it keeps fresh in the background (ICE servers are refreshed ahead
// of their TTL), mints a fresh viewer client id and a short-lived presigned
// wss:// URL, and hands out only those (Session). The first session of a
// page is minted while the page is rendered and embedded in it, with a
// Link dns-prefetch header for the signaling endpoint; a small inline
// bootstrap script opens the WebSocket, creates the peer connection and
// sends the offer before the rest of the page has loaded, and on a
// single-camera page plays the video before the page is built. Later
// attempts ask POST /api/session. The page runs the KVS viewer protocol itself with
// a small signaling client: offer, trickle ICE, answer, video (and audio
// after a click). Both inline scripts (and the inline style sheet) are
// allowed by their hashes in the Content-Security-Policy; nothing else runs.
//
// Two-way: every offer of the page carries a send-receive audio section
// without a track, for its push-to-talk button (Config.NoTalk takes it
// off), and with Config.Data a data channel with a console (hidden until
// its Data button or ?console=1). The microphone is asked for only while
// the button is held and its track is stopped on release; a camera that
// takes neither declines them in its answer and the page says so, in the
// Go viewer's words. Permissions-Policy allows the microphone for the
// player's origin only.
//
// Storage path (WebRTC ingestion's Multiviewer): a channel linked to a KVS
// stream (media storage configuration ENABLED, checked with
// DescribeMediaStorageConfiguration when the channel is resolved and
// refreshed with it; Config.Storage forces or disables it) is watched
// through its storage session, which takes the camera's media once and
// forwards it to every viewer. Its sessions have mode "storage": the page
// opens the viewer WebSocket, asks POST /api/storage-join (the server calls
// JoinStorageSessionAsViewer on the channel's WEBRTC endpoint: the keys stay
// here), answers the session's SDP offer (no senderClientId) and plays as a
// direct session does; it joins again every 6 s until the offer comes, 5
// times at most (as the official JS SDK does), reconnects with the same
// client id (the session keeps a viewer's place for a minute) and words the
// storage path's refusals (no storage configuration, stream deleted, the
// session's viewer limit, no offer).
//
// The page's retry policy follows retry.Policy: a bounded wait for the
// answer and for the first frame, retries with jittered exponential backoff,
// a fresh session per attempt and a complete teardown of the previous one;
// ICE restart (over a renewed signaling URL for the same client id) when
// the network path drops while playing, and a full reconnect when that or
// the video stalls. When it gives up it asks the server for a diagnosis
// (POST /api/diagnose), which re-checks the channel with the control plane,
// repeats a WebSocket upgrade the browser saw fail (a browser cannot read
// the refusal: a full channel, throttling, a bad signature), and words the
// cause (package cause's names, plus the player's own).
//
// Access control: Config.Auth is a token (16+ characters) that protects
// every page, the API and /metrics. A browser signs in once (login form, a
// one-time link with a code from NewSignInCode, or ?token=; the code or
// token is then removed from the address) and carries an HttpOnly,
// SameSite=Strict cookie that the server checks for age and revocation
// (RevokeSessions); scripts send "Authorization: Bearer TOKEN". Every
// failed check is charged to a per-client budget (IPv6: per /64), session
// minting is rate limited per client address, the API serves only
// Config.Channels, and POSTs must be same-origin JSON. Serve's HTTP server
// has read, write and idle timeouts and a connection cap. Behind a TLS
// reverse proxy, list it in Config.TrustedProxies. See docs/SECURITY.md.
//
// Embedding: the same API and the <kvs-viewer> element (kvs-viewer.js, an
// ES module with TypeScript declarations in kvs-viewer.d.ts) serve other
// apps' pages. NewHandler returns the API as an http.Handler that an app
// mounts under a path of its own and protects with its own sign-in
// through an AuthorizeFunc (which returns the channels the request's user
// may watch); TokenAuthorizer and CallbackAuthorizer delegate that
// decision to short-lived tokens signed by the app (SignToken) or to an
// HTTP callback of the app, as kvsrtc serve --api-only does. The element
// runs the built-in pages' own scripts (signaling.js, api.js, twoway.js,
// player.js, attempt.js, relay.js, storage.js, tile.js: one implementation of the
// connect policy) in a shadow root, under a
// strict Content-Security-Policy; see docs/EMBED.md.
//
// Endpoints:
//
//	GET  /               the player (?channel=NAME, ?stats=1, ?console=1), or the channel list
//	GET  /grid           every channel (or ?channel=A&channel=B) in a grid
//	GET  /login, POST /login
//	POST /api/session    {"channel"} -> Session; {"channel","renew":clientId} renews its URL
//	POST /api/storage-join  {"channel","clientId","retry"} -> 204: joins a storage session's page to it
//	POST /api/diagnose   what the page saw -> Diagnosis
//	POST /api/report     first-frame / attempt-failed / reconnect (metrics)
//	GET  /api/channels   the served channels
//	GET  /api/kvs-viewer.js, /api/kvs-viewer.d.ts   the <kvs-viewer> module and its types
//	GET  /metrics        Prometheus text format
//	GET  /healthz        liveness, no auth
//
// Use:
//
//	ctl, err := control.New(ctx, control.Config{})
//	if err != nil { ... }
//	srv, err := player.New(player.Config{Control: ctl, Channels: []string{"front-door"}, Auth: token})
//	if err != nil { ... }
//	ln, err := net.Listen("tcp", "127.0.0.1:8080")
//	if err != nil { ... }
//	err = srv.Serve(ctx, ln) // until ctx ends
package player
