package doctor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// run performs the master, ice and media checks.
func (p *probe) run(ctx context.Context) {
	d := p.d
	k := d.begin(CheckMaster, "master: answers an offer (with a correlationId)")
	skipRest := func(why string) {
		d.begin(CheckICE, "ice: the peer connection connects").skip(why)
		d.begin(CheckMedia, "media: video arrives").skip(why)
	}
	if err := p.newPC(d.cfg.VideoCodecs); err != nil {
		k.fail(cause.Config, err, "", "")
		skipRest("no peer connection")
		return
	}
	if err := p.offer(ctx); err != nil {
		k.fail(cause.SignalingLost, err, "sending the offer failed: "+err.Error(), "")
		skipRest("no offer was sent")
		return
	}
	k.fact("correlationId", p.corr)
	if sum, err := rtc.Summarize(p.offerSDP); err == nil {
		k.fact("offerTrickle", sum.Trickle)
	}
	offered := d.cfg.VideoCodecs
	if len(offered) == 0 {
		offered = []string{"H264", "VP8"}
	}
	k.fact("offeredVideo", offered)
	answered := func() bool { return p.answer != "" || p.status != nil || p.sigErr != nil }
	p.pump(ctx, d.cfg.AnswerWait, answered)
	if ctx.Err() != nil {
		k.skip("interrupted")
		skipRest("interrupted")
		return
	}
	ttl := d.channel.MessageTTL
	switch {
	case p.status != nil:
		st := p.status
		k.fact("statusResponse", map[string]any{"errorType": st.ErrorType, "statusCode": string(st.StatusCode), "description": st.Description})
		err := &cause.StatusError{Code: st.StatusCode.Int(), Type: st.ErrorType, Description: st.Description}
		k.fail(classify(err), err,
			fmt.Sprintf("the service refused the offer: %s: %s", st.ErrorType, st.Description), "")
		skipRest("the offer was refused")
		return
	case p.sigErr != nil && p.answer == "":
		if cause.TakenOver(p.sigErr) {
			k.fail(cause.ClientIDReuse, p.sigErr, fmt.Sprintf("another viewer connected with client id %s and took over this connection", d.clientID), "")
		} else {
			k.fail(cause.SignalingLost, p.sigErr, "the signaling connection ended before an answer: "+p.sigErr.Error(), "")
		}
		skipRest("no answer")
		return
	case p.answer == "":
		if len(d.cfg.VideoCodecs) > 0 && p.sigEv != nil && p.answeredWithAllCodecs(ctx) {
			k.fact("answeredWith", []string{"H264", "VP8"})
			k.fail(cause.BadOffer, nil,
				fmt.Sprintf("no answer to an offer with only %s within %v, but an offer with H264 and VP8 was answered: the master cannot send %s",
					strings.Join(d.cfg.VideoCodecs, ", "), d.cfg.AnswerWait, strings.Join(d.cfg.VideoCodecs, ", ")),
				"offer the codec the camera sends (kvsrtc view --codec H264,VP8): a master that cannot use an offer does not answer it at all")
			skipRest("the offer with the requested codecs was not answered")
			return
		}
		k.fact("waited", d.cfg.AnswerWait.String())
		if ttl > 0 {
			k.fact("messageTtl", ttl.String())
		}
		detail := fmt.Sprintf("no answer and no STATUS_RESPONSE within %v", d.cfg.AnswerWait)
		if d.cfg.AnswerWait > d.cfg.Viewer.AnswerTimeout {
			detail += fmt.Sprintf(", %.0f times the viewer's %v answer timeout: the master is not merely slow, it does not answer", float64(d.cfg.AnswerWait)/float64(d.cfg.Viewer.AnswerTimeout), d.cfg.Viewer.AnswerTimeout)
		}
		if ttl > d.cfg.AnswerWait {
			detail += fmt.Sprintf(" (the offer stays queued for the channel's %v TTL: a master that connects within it still gets it)", ttl)
		}
		k.fail(cause.NoAnswer, cause.ErrAnswerTimeout, detail,
			"no master answered: start the camera (master) on this channel and check its logs; a master that is connected but cannot use the offer stays silent too")
		skipRest("no answer")
		return
	}
	took := p.answerAt.Sub(p.offerAt)
	early := p.peer.Pending() // candidates trickled before the answer
	k.fact("answerTime", took.Round(time.Millisecond).String())
	sum, sumErr := rtc.Summarize(p.answer)
	if sumErr == nil {
		k.fact("answeredVideo", videoCodec(sum))
		k.fact("answerTrickle", sum.Trickle)
		k.fact("answerCandidates", sum.Candidates)
	}
	k.fact("trickledBeforeAnswer", early)
	if err := answerUsable(sum, sumErr); err != nil {
		k.fail(cause.BadOffer, err, "", "")
		skipRest("the answer cannot be used")
		return
	}
	if err := p.peer.SetAnswer(p.answer); err != nil && !errors.Is(err, rtc.ErrCandidate) {
		k.fail(cause.BadOffer, err, "the answer could not be applied: "+err.Error(), "")
		skipRest("the answer cannot be used")
		return
	}
	p.judgeAnswerTime(k, took, sum, early)
	p.checkICE(ctx)
}

// judgeAnswerTime passes an answer that came within the viewer's answer
// timeout; a slower one is a finding (warn) with the measured time, the
// likely reason and the fix, and a failure when even the viewer's
// late-answer window is too short for it.
func (p *probe) judgeAnswerTime(k *checker, took time.Duration, sum rtc.Summary, early int) {
	pol := p.d.cfg.Viewer
	if took <= pol.AnswerTimeout {
		k.pass("")
		return
	}
	k.fact("viewerAnswerTimeout", pol.AnswerTimeout.String())
	t := took.Round(100 * time.Millisecond)
	suggest := (took + time.Second).Truncate(time.Second)
	detail := fmt.Sprintf("the master answered after %v, later than the viewer's %v answer timeout (it works, it is slow): %s",
		t, pol.AnswerTimeout, slowReason(sum, early))
	camera := "on the camera's side, answer before ICE gathering ends (trickle ICE: a KVS C SDK camera does when the offer carries a=ice-options:trickle, as kvsrtc's offers do), and give it STUN/TURN servers it can reach"
	if pol.LateAnswerWindow > pol.AnswerTimeout && took <= pol.LateAnswerWindow {
		k.fact("viewerLateAnswerWindow", pol.LateAnswerWindow.String())
		k.warn(cause.SlowAnswer, detail, fmt.Sprintf(
			"kvsrtc view with default settings still connects, but slowly: an attempt keeps listening for a late answer for up to %v while the next offer goes out, so video comes after about %v and the camera answers two offers; `kvsrtc view --answer-timeout %v` waits for this answer in the first attempt and sends only one offer; %s",
			pol.LateAnswerWindow, t, suggest, camera))
		return
	}
	window := "it has no late-answer window"
	if pol.LateAnswerWindow > pol.AnswerTimeout {
		window = fmt.Sprintf("late-answer window %v", pol.LateAnswerWindow)
	}
	k.fail(cause.SlowAnswer, cause.ErrAnswerTimeout, detail+fmt.Sprintf("; a viewer with these settings gives up on every attempt before its answer comes (%s)", window),
		fmt.Sprintf("use `kvsrtc view --answer-timeout %v` (the measured answer time plus a margin); %s", suggest, camera))
}

// slowReason says why an answer was slow, from what the answer carries.
func slowReason(sum rtc.Summary, early int) string {
	switch {
	case sum.Candidates > 0 && !sum.Trickle && early == 0:
		return fmt.Sprintf("it does not trickle ICE: the answer carries all %d of its candidates and no a=ice-options:trickle, so it answered only once its candidate gathering was done, and gathering took that long "+
			"(a KVS C SDK camera answers an offer it takes for non-trickle after its 10 s gathering timeout; any camera waits that long for a STUN or TURN server that does not answer)", sum.Candidates)
	}
	return "it trickles its candidates, so the time went before it answered: an overloaded camera, a slow uplink or a slow signaling path"
}

// answeredWithAllCodecs offers H264 and VP8 on a new peer connection and
// reports whether the master answered that.
func (p *probe) answeredWithAllCodecs(ctx context.Context) bool {
	if err := p.newPC(nil); err != nil {
		return false
	}
	if err := p.offer(ctx); err != nil {
		return false
	}
	p.pump(ctx, p.d.cfg.AnswerWait, func() bool { return p.answer != "" || p.status != nil || p.sigErr != nil })
	return p.answer != ""
}

// answerUsable rejects an answer that is not SDP or has no accepted video
// section.
func answerUsable(sum rtc.Summary, parseErr error) error {
	if parseErr != nil {
		return fmt.Errorf("the answer is not usable SDP: %w", parseErr)
	}
	v, ok := sum.Section("video")
	switch {
	case !ok:
		return errors.New("the answer has no video section")
	case v.Port == 0:
		return errors.New("the master declined the video section of the offer (port 0): it has no codec in common with the offer")
	}
	return nil
}

// videoCodec returns the first codec of the video section ("" if none).
func videoCodec(sum rtc.Summary) string {
	if v, ok := sum.Section("video"); ok && len(v.Codecs) > 0 {
		_, name, _ := strings.Cut(v.Codecs[0].MimeType, "/")
		return name
	}
	return ""
}

// checkICE waits for the peer connection to connect.
func (p *probe) checkICE(ctx context.Context) {
	d := p.d
	k := d.begin(CheckICE, "ice: the peer connection connects")
	connected := func() bool {
		return p.iceState == webrtc.ICEConnectionStateConnected || p.iceState == webrtc.ICEConnectionStateCompleted ||
			p.iceState == webrtc.ICEConnectionStateFailed
	}
	p.pump(ctx, d.cfg.ConnectWait, connected)
	// A master that does not trickle puts its candidates in the answer:
	// count both.
	var inAnswer map[string]int
	if sum, err := rtc.Summarize(p.answer); err == nil {
		inAnswer = sum.CandidateTypes
	}
	all := maps.Clone(p.remote)
	for typ, n := range inAnswer {
		all[typ] += n
	}
	k.fact("localCandidates", typeCounts(p.local))
	k.fact("remoteCandidates", typeCounts(all))
	k.fact("remoteInAnswer", total(inAnswer))
	k.fact("remoteTrickled", total(p.remote))
	if ctx.Err() != nil {
		k.skip("interrupted")
		d.begin(CheckMedia, "media: video arrives").skip("interrupted")
		return
	}
	if p.iceState != webrtc.ICEConnectionStateConnected && p.iceState != webrtc.ICEConnectionStateCompleted {
		k.fact("state", p.iceState.String())
		detail := fmt.Sprintf("ICE did not connect within %v (state %s)", d.cfg.ConnectWait, p.iceState)
		advice := "no network path between this machine and the camera: UDP is probably blocked; a TURN relay (kvsrtc view --relay) gets through where direct paths cannot"
		c := cause.NoMedia
		if d.cfg.ForceRelay && p.local["relay"] == 0 {
			c = cause.ICEExpired
			detail += "; relay only, and no relay candidate was gathered"
			advice = ""
		}
		if len(all) == 0 {
			detail += "; the master sent no ICE candidates (none in its answer, none trickled)"
		}
		k.fail(c, nil, detail, advice)
		d.begin(CheckMedia, "media: video arrives").skip("not connected")
		return
	}
	if pair, err := p.peer.PC.SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
		k.fact("selectedPair", fmt.Sprintf("%s %s -> %s %s", pair.Local.Typ, pair.Local.Protocol, pair.Remote.Typ, pair.Remote.Protocol))
	}
	k.fact("connectTime", time.Since(p.answerAt).Round(time.Millisecond).String())
	k.pass("")
	p.checkMedia(ctx)
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func typeCounts(m map[string]int) map[string]int {
	out := map[string]int{"host": m["host"], "srflx": m["srflx"], "relay": m["relay"]}
	for k, v := range m {
		if !slices.Contains([]string{"host", "srflx", "relay"}, k) {
			out[k] = v
		}
	}
	return out
}

// checkMedia waits for the first video keyframe.
func (p *probe) checkMedia(ctx context.Context) {
	d := p.d
	k := d.begin(CheckMedia, "media: video arrives")
	// With Config.Audio, also wait (as long) for the first audio packet.
	p.pump(ctx, d.cfg.MediaWait, func() bool { return !p.keyAt.IsZero() && (!d.cfg.Audio || !p.audioAt.IsZero()) })
	st := p.video.Snapshot()
	if ctx.Err() != nil {
		k.skip("interrupted")
		return
	}
	if p.keyAt.IsZero() {
		k.fact("frames", st.Frames)
		detail := fmt.Sprintf("connected, but no video keyframe within %v", d.cfg.MediaWait)
		if st.Frames > 0 {
			detail += fmt.Sprintf(" (%d frames without a keyframe)", st.Frames)
		}
		k.fail(cause.NoMedia, cause.ErrNoMedia, detail, "the camera (master) answers but sends no video: check its video source")
		return
	}
	k.fact("firstFrame", p.keyAt.Sub(p.answerAt).Round(time.Millisecond).String()+" after the answer")
	k.fact("codec", string(st.Codec))
	k.fact("resolution", fmt.Sprintf("%dx%d", st.Width, st.Height))
	k.fact("frames", st.Frames)
	note := ""
	if n := p.audioPkts.Load(); n > 0 || d.cfg.Audio {
		k.fact("audioPackets", n)
		if n == 0 {
			note = fmt.Sprintf("no audio within %v: the camera sends none, or not in Opus", d.cfg.MediaWait)
		}
	}
	k.pass(note)
}
