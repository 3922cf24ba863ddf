package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
)

func init() {
	register(command{
		name:    "master",
		summary: "act as a channel's master: stream a test pattern, a file, an RTSP camera or stdin to every viewer",
		run:     runMaster,
	})
}

// masterFlags are the flags of "kvsrtc master".
type masterFlags struct {
	channel, channelARN string
	source              string
	fps                 float64
	audio               bool
	audioFile           string
	create              bool
	maxViewers          int
	relay               bool
	loopback            bool
	talkbackDir         string
	talkbackCmd         string
	data                string
	ingest              bool
	aws                 awsFlags
	log                 logFlags
}

func runMaster(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "master", "--channel NAME [--source testsrc|testsrc-vp8|FILE|rtsp://...|-] [flags]")
	var f masterFlags
	fs.StringVar(&f.channel, "channel", "", "signaling channel name (or use --channel-arn)")
	fs.StringVar(&f.channelARN, "channel-arn", "", "signaling channel ARN (instead of --channel)")
	fs.StringVar(&f.source, "source", "testsrc", "video to stream: testsrc (H.264 test pattern), testsrc-vp8, a file (.h264 Annex-B, .ivf VP8, or .mp4/.mov with H.264 and optional Opus audio; looped), rtsp://[user:pass@]host/path (an RTSP camera via ffmpeg -c copy, restarted with backoff), or - for H.264 Annex-B on stdin")
	fs.Float64Var(&f.fps, "fps", media.DefaultFPS, "frame rate of H.264 Annex-B input (stdin and .h264 files carry no timestamps); MP4 and RTSP keep their own timing")
	fs.BoolVar(&f.audio, "audio", false, "also send the Opus test tone")
	fs.StringVar(&f.audioFile, "audio-file", "", "also send this Ogg/Opus file (looped)")
	fs.BoolVar(&f.create, "create", false, "create the channel if it does not exist (with --channel)")
	fs.IntVar(&f.maxViewers, "max-viewers", master.DefaultMaxViewers, "maximum concurrent viewers; offers beyond it are not answered")
	fs.BoolVar(&f.relay, "relay", false, "use TURN relay candidates only")
	fs.BoolVar(&f.loopback, "loopback-only", false, "gather loopback ICE candidates only (local tests and demos)")
	fs.StringVar(&f.talkbackDir, "talkback-dir", "", "accept viewers' talk-back audio: record each viewer's to DIR/talkback-<client id>-<time>.ogg (Ogg/Opus, finalised when it leaves and on Ctrl-C)")
	fs.StringVar(&f.talkbackCmd, "talkback-cmd", "", `accept viewers' talk-back audio: pipe it (Ogg/Opus) into this shell command, one viewer at a time, e.g. 'ffplay -nodisp -autoexit -'`)
	fs.StringVar(&f.data, "data", "", `accept data channels: "echo" sends every message back; "stdio" prints "<client id><TAB><message>" lines and sends stdin lines ("<client id><TAB>text", or "text" to every viewer)`)
	fs.BoolVar(&f.ingest, "ingest", false, "WebRTC ingestion: also stream to the channel's storage session (the channel must be linked to a stream with update-media-storage-configuration; H.264 only), which records it and serves Multiviewer viewers (kvsrtc view --storage); their talk-back goes to --talkback-dir/--talkback-cmd. Direct viewers are still served")
	f.aws.register(fs)
	f.log.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	log, err := f.log.logger(env.Stderr)
	if err != nil {
		return err
	}

	video, audio, err := f.openSources(env, log)
	if err != nil {
		return err
	}
	closeSources := func() {
		video.Close()
		if audio != nil {
			audio.Close()
		}
	}

	ctl, hc, err := f.aws.control(ctx, env, control.Config{Logger: log})
	if err != nil {
		closeSources()
		if errors.Is(err, control.ErrMissingRegion) || errors.Is(err, control.ErrInvalidArgument) {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return err
	}
	channel := f.channel
	if f.channelARN != "" {
		channel = f.channelARN
	}
	if f.create {
		if err := ensureChannel(ctx, ctl, channel, log); err != nil {
			closeSources()
			return err
		}
	}
	policy := master.ICEPolicyAll
	if f.relay {
		policy = master.ICEPolicyRelay
	}
	mcfg := master.Config{
		Channel:            channel,
		Control:            ctl,
		HTTPClient:         hc,
		Video:              video,
		Audio:              audio,
		MaxViewers:         f.maxViewers,
		LoopbackOnly:       f.loopback,
		ICETransportPolicy: policy,
		Ingest:             f.ingest,
		Logger:             log,
	}
	stdinLoop, err := f.twoWay(&mcfg, env, log)
	if err != nil {
		closeSources()
		return err
	}
	m, err := master.New(mcfg)
	if err != nil {
		closeSources()
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if stdinLoop != nil {
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go stdinLoop(lctx, m) // ends with stdin; a terminal read cannot be interrupted
	}
	err = m.Run(ctx) // owns the sources from here on
	if errors.Is(err, control.ErrStorageNotConfigured) {
		return fmt.Errorf("%w\n--ingest needs a channel linked to a stream: aws kinesisvideo update-media-storage-configuration --channel-arn ARN --media-storage-configuration Status=ENABLED,StreamARN=STREAM_ARN (or run without --ingest)", err)
	}
	if errors.Is(err, control.ErrChannelNotFound) && !f.create && f.channel != "" {
		return fmt.Errorf("%w (add --create to create it)", err)
	}
	if err == nil && ctx.Err() != nil {
		log.Info("master stopped", "cause", context.Cause(ctx))
	}
	return err
}

// check rejects bad flag combinations.
func (f *masterFlags) check() error {
	switch {
	case f.channel == "" && f.channelARN == "":
		return fmt.Errorf("%w: set --channel NAME or --channel-arn ARN", ErrUsage)
	case f.channel != "" && f.channelARN != "":
		return fmt.Errorf("%w: set --channel or --channel-arn, not both", ErrUsage)
	case f.channelARN != "" && !strings.HasPrefix(f.channelARN, "arn:"):
		return fmt.Errorf("%w: --channel-arn %q is not an ARN (use --channel for a name)", ErrUsage, f.channelARN)
	case f.create && f.channelARN != "":
		return fmt.Errorf("%w: --create needs --channel NAME (a channel's ARN is only known once it exists)", ErrUsage)
	case f.audio && f.audioFile != "":
		return fmt.Errorf("%w: set --audio (test tone) or --audio-file, not both", ErrUsage)
	case !(f.fps > 0 && f.fps <= 240):
		return fmt.Errorf("%w: --fps %v must be in (0, 240]", ErrUsage, f.fps)
	case f.maxViewers < 1:
		return fmt.Errorf("%w: --max-viewers %d must be at least 1", ErrUsage, f.maxViewers)
	case f.source == "":
		return fmt.Errorf("%w: --source must not be empty (testsrc, testsrc-vp8, a file or -)", ErrUsage)
	case f.data != "" && f.data != "echo" && f.data != "stdio":
		return fmt.Errorf("%w: --data %q: want echo or stdio", ErrUsage, f.data)
	case f.data == "stdio" && f.source == "-":
		return fmt.Errorf("%w: --data stdio and --source - both read stdin; use --data echo, or stream from a file", ErrUsage)
	case f.ingest && (f.source == "testsrc-vp8" || strings.HasSuffix(strings.ToLower(f.source), ".ivf")):
		return fmt.Errorf("%w: --ingest: the storage session takes H.264 video, and --source %s is VP8", ErrUsage, f.source)
	}
	return nil
}

// ensureChannel creates the channel unless it exists.
func ensureChannel(ctx context.Context, ctl *control.Client, name string, log *slog.Logger) error {
	_, err := ctl.ResolveChannel(ctx, name)
	if err == nil || !errors.Is(err, control.ErrChannelNotFound) {
		return err
	}
	arn, err := ctl.CreateChannel(ctx, name, 0)
	if errors.Is(err, control.ErrResourceInUse) {
		return nil // created meanwhile
	}
	if err != nil {
		return fmt.Errorf("creating channel %s: %w", name, err)
	}
	log.Info("channel created", "channel", name, "arn", arn)
	return nil
}
