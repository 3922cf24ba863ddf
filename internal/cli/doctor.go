package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/doctor"
	"github.com/kvsrtc/kvsrtc/rtc"
)

func init() {
	register(command{name: "doctor", summary: "diagnose why a viewer gets no answer or no video, and say what to do", run: runDoctor})
}

// doctorFlags are the flags of "kvsrtc doctor".
type doctorFlags struct {
	aws         awsFlags
	logs        logFlags
	ch          channelFlags
	clientID    string
	stsEndpoint string
	answerWait  time.Duration
	connectWait time.Duration
	mediaWait   time.Duration
	codecs      string
	audio       bool
	relay       bool
	jsonOut     bool
	loopback    bool
}

func runDoctor(ctx context.Context, env *Env, args []string) error {
	var f doctorFlags
	fs := newFlagSet(env, "doctor", "--channel NAME [--json] [flags]")
	f.ch.register(fs)
	fs.StringVar(&f.clientID, "client-id", "", "viewer client id to check and connect with (default: a fresh kvsrtc-doctor-... id; a used one displaces that viewer)")
	fs.StringVar(&f.stsEndpoint, "sts-endpoint", "", "STS endpoint of the credentials check (default: the control-plane endpoint when it is not AWS, else AWS STS)")
	fs.DurationVar(&f.answerWait, "answer-wait", 0, "how long to wait for the master's answer (default 15s)")
	fs.DurationVar(&f.connectWait, "connect-wait", 0, "how long ICE may take to connect (default 10s)")
	fs.DurationVar(&f.mediaWait, "media-wait", 0, "how long to wait for the first video frame (default 10s)")
	fs.StringVar(&f.codecs, "codec", "", "video codecs to offer, comma-separated (H264,VP8; default both)")
	fs.BoolVar(&f.audio, "audio", false, "also ask for audio")
	fs.BoolVar(&f.relay, "relay", false, "connect over TURN relay candidates only")
	fs.BoolVar(&f.jsonOut, "json", false, "write the report as one JSON object")
	fs.BoolVar(&f.loopback, "loopback-only", false, "gather loopback ICE candidates only (local tests and demos)")
	f.aws.register(fs)
	f.logs.registerLevel(fs, "warn")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	channel, err := f.ch.value()
	if err != nil {
		return err
	}
	if f.answerWait < 0 || f.connectWait < 0 || f.mediaWait < 0 {
		return fmt.Errorf("%w: --answer-wait, --connect-wait and --media-wait must not be negative", ErrUsage)
	}
	var codecs []string
	if f.codecs != "" {
		for c := range strings.SplitSeq(f.codecs, ",") {
			if _, err := rtc.ParseCodec(c); err != nil {
				return fmt.Errorf("%w: --codec: %w", ErrUsage, err)
			}
			codecs = append(codecs, strings.TrimSpace(c))
		}
	}
	log, err := f.logs.logger(env.Stderr)
	if err != nil {
		return err
	}
	ctl, hc, err := f.aws.control(ctx, env, control.Config{Logger: log})
	if err != nil {
		// No usable configuration at all is the first check failing.
		return fmt.Errorf("%w (the credentials check cannot even start)", err)
	}
	cfg := doctor.Config{
		Channel: channel, Control: ctl, ClientID: f.clientID, STSEndpoint: f.stsEndpoint, HTTPClient: hc,
		AnswerWait: f.answerWait, ConnectWait: f.connectWait, MediaWait: f.mediaWait,
		VideoCodecs: codecs, Audio: f.audio, ForceRelay: f.relay, LoopbackOnly: f.loopback, Logger: log,
	}
	if !f.jsonOut {
		fmt.Fprintf(env.Stdout, "kvsrtc doctor: channel %s, region %s\n\n", channel, ctl.Region())
		cfg.OnCheck = func(c doctor.Check) { doctor.WriteCheck(env.Stdout, c) }
	}
	rep, err := doctor.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if f.jsonOut {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(env.Stdout)
		if rep.Verdict.OK {
			fmt.Fprintf(env.Stdout, "VERDICT: OK: %s (%v)\n", rep.Verdict.Summary, rep.Duration.Round(time.Millisecond))
		} else {
			fmt.Fprintf(env.Stdout, "VERDICT: %s\n", rep.Verdict.Summary)
			if rep.Verdict.Advice != "" {
				fmt.Fprintf(env.Stdout, "WHAT TO DO: %s\n", rep.Verdict.Advice)
			}
		}
	}
	if ctx.Err() != nil {
		return &exitError{code: 1, err: errors.New("interrupted")}
	}
	if !rep.OK() {
		return &exitError{code: 1, err: fmt.Errorf("found a problem: %s", rep.Verdict.Cause)}
	}
	return nil
}
