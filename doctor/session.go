package doctor

import (
	"context"
	"errors"
	"time"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/retry"
	"github.com/kvsrtc/kvsrtc/signaling"
)

// doctorIDPrefix starts the client ids the doctor generates.
const doctorIDPrefix = "kvsrtc-doctor-"

// checkClientID validates the client id the session checks use.
func (d *run) checkClientID() {
	k := d.begin(CheckClientID, "client-id: follows the rules")
	id, generated := d.cfg.ClientID, false
	if id == "" {
		ids := &retry.ClientIDs{Prefix: doctorIDPrefix}
		var err error
		if id, err = ids.Next(); err != nil {
			k.fail(cause.ClientID, err, "", "")
			return
		}
		generated = true
	}
	k.fact("clientId", id)
	k.fact("length", len(id))
	k.fact("generated", generated)
	if err := kvsproto.ValidateClientID(id); err != nil {
		k.fail(cause.ClientID, err, "", "")
		return
	}
	d.clientID, d.idOK = id, true
	d.rep.ClientID = id
	if generated {
		k.pass("")
		return
	}
	k.pass("if another viewer uses this client id, connecting with it displaced that viewer (the newest connection wins)")
}

// checkSession runs the checks that need a signaling connection and a
// peer connection: signaling, master, ice, media.
func (d *run) checkSession(ctx context.Context) {
	k := d.begin(CheckSignaling, "signaling: WebSocket connects as VIEWER")
	rest := func(why string) {
		for _, c := range []struct{ name, title string }{
			{CheckMaster, "master: answers an offer"},
			{CheckICE, "ice: the peer connection connects"},
			{CheckMedia, "media: video arrives"},
		} {
			d.begin(c.name, c.title).skip(why)
		}
	}
	switch {
	case !d.haveEP:
		k.skip("needs the endpoints")
		rest("needs the signaling connection")
		return
	case !d.idOK:
		k.skip("needs a valid client id")
		rest("needs the signaling connection")
		return
	}
	ctl := d.ctl
	cfg := signaling.Config{
		Endpoint: d.endpoints.WSS, ChannelARN: d.channel.ARN, Role: kvsproto.RoleViewer, ClientID: d.clientID,
		Region: ctl.Region(), Credentials: ctl.SigV4Credentials, Now: ctl.Now, HTTPClient: d.cfg.HTTPClient, Logger: d.log,
	}
	k.fact("endpoint", d.endpoints.WSS)
	sess, err := signaling.NewSession(signaling.SessionConfig{
		Dialer: signaling.DialerFor(cfg),
		// The doctor reports a failed dial instead of retrying it, and a
		// message it cannot send at once is a finding, not a queued one.
		GiveUp:    func(error, int) bool { return true },
		OutboxTTL: -1,
		Logger:    d.log,
	})
	if err != nil {
		k.fail(cause.Config, err, "", "")
		rest("needs the signaling connection")
		return
	}
	p := &probe{d: d, sess: sess, sigEv: sess.Events(), runErr: make(chan error, 1)}
	runCtx, stop := context.WithCancel(ctx)
	p.stop = stop
	go func() { p.runErr <- sess.Run(runCtx) }()
	defer p.close()
	err = p.waitConnected(ctx)
	if err != nil {
		var he *signaling.HandshakeError
		if errors.As(err, &he) {
			k.fact("httpStatus", he.StatusCode)
			k.fact("errorCode", he.Code)
		}
		if !failUnreachable(k, err) {
			k.fail(classify(err), err, "", "")
		}
		rest("needs the signaling connection")
		return
	}
	k.fact("connectTime", time.Since(k.start).Round(time.Millisecond).String())
	k.pass("")
	p.run(ctx)
}
