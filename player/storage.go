package player

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// The storage path (WebRTC ingestion's Multiviewer): a channel linked to a
// KVS stream (UpdateMediaStorageConfiguration, Status ENABLED) has a storage
// session that takes the camera's media once and forwards it to its
// viewers. A page watches such a channel as a viewer of that session: it
// opens its viewer WebSocket as for a direct session, asks this server to
// join it (POST /api/storage-join: the server calls
// JoinStorageSessionAsViewer, so the AWS keys stay here), waits for the
// session's SDP offer (no senderClientId), answers it and trickles its
// candidates. See storage.js for the page's side.

// StorageMode is whether the pages use the storage path (Config.Storage).
type StorageMode string

// Storage modes.
const (
	// StorageAuto (the default): a channel whose media storage
	// configuration is ENABLED (DescribeMediaStorageConfiguration, checked
	// with the channel's other data and refreshed with it) is watched
	// through its storage session; every other channel directly.
	StorageAuto StorageMode = "auto"
	// StorageOn: every channel is watched through its storage session; a
	// channel without one fails with the cause storage-not-configured.
	StorageOn StorageMode = "on"
	// StorageOff: every channel is watched directly (or through the relay),
	// storage configuration or not; DescribeMediaStorageConfiguration is not
	// called.
	StorageOff StorageMode = "off"
)

// StorageClient makes the storage path's control-plane calls.
// *control.Client implements it (Config.StorageClient defaults to
// Config.Control).
type StorageClient interface {
	// MediaStorage is the channel's media storage configuration
	// (DescribeMediaStorageConfiguration).
	MediaStorage(ctx context.Context, channelARN string) (control.MediaStorage, error)
	// StorageEndpoints are the channel's WSS, HTTPS and WEBRTC endpoints
	// for role (GetSignalingChannelEndpoint with the WEBRTC protocol).
	StorageEndpoints(ctx context.Context, channelARN string, role kvsproto.Role) (control.Endpoints, error)
	// JoinStorageSessionAsViewer asks the storage session to send its offer
	// to the viewer whose signaling connection has clientID (POST
	// /joinStorageSessionAsViewer on the WEBRTC endpoint, signed for
	// kinesisvideo). Errors match control's storage sentinels
	// (control.ErrStorageNotConfigured, ErrStreamNotFound,
	// ErrStorageViewerLimit, ErrJoinerNotConnected) where they apply.
	JoinStorageSessionAsViewer(ctx context.Context, webrtcEndpoint, channelARN, clientID string) error
}

// ModeStorage is Session.Mode of a session through the channel's storage
// session: the page opens SignalingURL as ClientID, then asks the server to
// join (POST /api/storage-join) and answers the offer that comes.
const ModeStorage = "storage"

// storageJoinTimeout bounds one JoinStorageSessionAsViewer call.
const storageJoinTimeout = 10 * time.Second

// maxViewers finds the limit in the service's refusal of a join over it
// ("... the maximum of 3 viewers ...").
var maxViewers = regexp.MustCompile(`(?i)maximum of (\d+) viewers`)

// storageInfo is what the server knows of a channel's storage path.
type storageInfo struct {
	on        bool   // watched through the storage session
	streamARN string // the linked stream (auto mode)
}

// detectStorage decides whether a channel is watched through its storage
// session. In auto mode a failed DescribeMediaStorageConfiguration (an IAM
// policy without it, an old emulator) means direct: the storage path is an
// optimisation, not a requirement.
func (c *channels) detectStorage(ctx context.Context, name, arn string) storageInfo {
	switch c.storageMode {
	case StorageOn:
		return storageInfo{on: true}
	case StorageAuto:
	default:
		return storageInfo{}
	}
	ms, err := c.store.MediaStorage(ctx, arn)
	if err != nil {
		if ctx.Err() == nil && c.log != nil {
			c.log("media storage configuration unknown; the channel is watched directly", "channel", name, "err", err)
		}
		return storageInfo{}
	}
	return storageInfo{on: ms.Enabled, streamARN: ms.StreamARN}
}

// storageOf reports whether the channel is watched through its storage
// session, as last resolved.
func (c *channels) storageOf(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	info, ok := c.infos[name]
	return ok && info.storage.on
}

// storageJoinRequest is the body of POST /api/storage-join.
type storageJoinRequest struct {
	Channel  string `json:"channel"`
	ClientID string `json:"clientId"`
	// Retry is 0 for an attempt's first join, then 1, 2, ... for the
	// re-joins while no offer has come.
	Retry int `json:"retry"`
}

// issuedFor reports whether this server minted id for channel recently.
func (s *Server) issuedFor(id, channel string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	is, ok := s.issued[id]
	return ok && is.channel == channel && s.cfg.Now().Sub(is.last) < renewWindow
}

// handleStorageJoin joins a page's viewer connection to the channel's
// storage session: JoinStorageSessionAsViewer with the page's client id (one
// this server minted for that channel) on the channel's WEBRTC endpoint.
// 204 means the service took the request; the offer comes over the page's
// WebSocket, later.
func (s *Server) handleStorageJoin(w http.ResponseWriter, r *http.Request) {
	var req storageJoinRequest
	if !s.decode(w, r, &req) {
		return
	}
	if !s.admit(w, r, req.Channel, "This browser sent too many requests in a short time.") {
		return
	}
	if !s.issuedFor(req.ClientID, req.Channel) {
		s.metrics.inc(s.metrics.failures, string(CauseBadRequest))
		s.apiError(w, http.StatusBadRequest, Diagnosis{Cause: CauseBadRequest, Title: "Bad request",
			Message: fmt.Sprintf("Client id %q was not issued by this server for channel %q (or too long ago).", req.ClientID, req.Channel),
			Advice:  "Reload the page.", Retryable: true})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storageJoinTimeout)
	defer cancel()
	err := s.joinStorage(ctx, req.Channel, req.ClientID)
	if err != nil {
		c, status, d := s.storageRefusal(req.Channel, err)
		s.metrics.inc(s.metrics.storageJoinFailures, string(c))
		s.log.Warn("joining the storage session failed", "channel", req.Channel, "client_id", req.ClientID, "retry", req.Retry, "cause", c, "err", err)
		s.apiError(w, status, d)
		return
	}
	if req.Retry == 0 {
		s.metrics.inc(s.metrics.storageSessions, req.Channel)
	}
	s.log.Debug("storage session joined", "channel", req.Channel, "client_id", req.ClientID, "retry", req.Retry)
	w.WriteHeader(http.StatusNoContent)
}

// joinStorage calls JoinStorageSessionAsViewer for a served channel.
func (s *Server) joinStorage(ctx context.Context, channel, clientID string) error {
	arn, ep, err := s.chans.get(ctx, channel, s.cfg.ChannelRefresh+time.Minute)
	if err != nil {
		return err
	}
	if !s.chans.storageOf(channel) || ep.WebRTC == "" {
		return fmt.Errorf("player: channel %q: %w", channel, control.ErrStorageNotConfigured)
	}
	return s.cfg.StorageClient.JoinStorageSessionAsViewer(ctx, ep.WebRTC, arn, clientID)
}

// storageRefusal is the cause, HTTP status and diagnosis of a failed join.
// A channel found without storage, or with its stream gone, is resolved
// again: the storage configuration may have changed (the next session is
// then direct).
func (s *Server) storageRefusal(channel string, err error) (cause.Cause, int, Diagnosis) {
	c, status, _ := classify(err)
	if errors.Is(err, control.ErrJoinerNotConnected) {
		// The page's socket is not (yet) known to the service; classify
		// would call it the service's error.
		c = cause.SignalingLost
	}
	region := s.cfg.Control.Region()
	status = storageStatus(c, status)
	if c == cause.StorageNotConfigured || c == cause.StreamMissing {
		s.chans.forget(channel)
	}
	d := diagnoseStorage(c, channel, region, 0, 0, err)
	if c == cause.Credentials {
		d.Message += " The call was JoinStorageSessionAsViewer: the server's IAM policy must allow kinesisvideo:JoinStorageSessionAsViewer on the channel."
	}
	return c, status, d
}

// storageStatus is the HTTP status of a refusal for the storage path's
// causes (status otherwise).
func storageStatus(c cause.Cause, status int) int {
	switch c {
	case cause.StorageNotConfigured, cause.SignalingLost:
		return http.StatusConflict
	case cause.StreamMissing:
		return http.StatusNotFound
	case cause.StorageFull:
		return http.StatusServiceUnavailable
	}
	return status
}

// diagnoseStorage is diagnose with the storage path's own words for its
// causes.
func diagnoseStorage(c cause.Cause, channel, region string, attempts int, spent time.Duration, err error) Diagnosis {
	d := Diagnosis{Cause: c}
	tried := triedText(attempts, spent)
	switch c {
	case cause.StorageNotConfigured:
		d.Title = "The camera's storage session is not set up"
		d.Message = fmt.Sprintf("Channel %q is not configured for media storage (WebRTC ingestion), so it has no storage session to watch%s.", channel, tried)
		d.Advice = "Press Retry: the page then connects to the camera directly if it can. The operator can link the channel to a stream with update-media-storage-configuration, or run kvsrtc serve with --storage auto."
		d.Retryable = true
	case cause.StreamMissing:
		d.Title = "The camera's recording stream is missing"
		d.Message = fmt.Sprintf("The stream that channel %q records into was deleted, so its storage session cannot run.", channel)
		d.Advice = "The operator must create a stream and link the channel to it again (update-media-storage-configuration), or turn media storage off for the channel."
	case cause.StorageFull:
		d.Title = "Too many viewers"
		d.Message = fmt.Sprintf("The storage session of channel %q already has its maximum number of viewers.", channel)
		var api *control.APIError
		if errors.As(err, &api) {
			if m := maxViewers.FindStringSubmatch(api.Message); m != nil {
				// The service's own words: "the maximum of N viewers".
				d.Message = fmt.Sprintf("The storage session of channel %q already has the maximum of %s viewers.", channel, m[1])
			}
		}
		d.Advice = "Close another viewer of this camera (a viewer's place is freed about a minute after it leaves), then press Retry."
	case cause.NoStorageOffer:
		d.Title = "The camera's storage session sent no video"
		d.Message = fmt.Sprintf("The storage session of channel %q did not offer this browser a connection%s. The camera is offline, or has not joined its storage session.", channel, tried)
		d.Advice = "Check that the camera is online and ingesting into the channel's storage (kvsrtc master --ingest), then press Retry."
		d.Retryable = true
	default:
		return diagnose(c, channel, region, attempts, spent, err)
	}
	if err != nil {
		var api *control.APIError
		if errors.As(err, &api) && api.Code != "" {
			d.Message += " (" + api.Code + ")"
		}
	}
	return d
}

// useStorage sets the storage path's mode and client (New).
func (c *channels) useStorage(mode StorageMode, client StorageClient, log *slog.Logger) {
	c.storageMode, c.store = mode, client
	c.log = log.Info
}
