package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

func init() {
	register(command{
		name:    "master",
		summary: "act as a channel's master: stream a test pattern, a file or stdin to every viewer",
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
	aws                 awsFlags
	log                 logFlags
}

func runMaster(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "master", "--channel NAME [--source testsrc|testsrc-vp8|FILE|-] [flags]")
	var f masterFlags
	fs.StringVar(&f.channel, "channel", "", "signaling channel name (or use --channel-arn)")
	fs.StringVar(&f.channelARN, "channel-arn", "", "signaling channel ARN (instead of --channel)")
	fs.StringVar(&f.source, "source", "testsrc", "video to stream: testsrc (H.264 test pattern), testsrc-vp8, a file (.h264 Annex-B or .ivf VP8; looped), or - for H.264 Annex-B on stdin")
	fs.Float64Var(&f.fps, "fps", media.DefaultFPS, "frame rate of H.264 Annex-B input (stdin and .h264 files carry no timestamps)")
	fs.BoolVar(&f.audio, "audio", false, "also send the Opus test tone")
	fs.StringVar(&f.audioFile, "audio-file", "", "also send this Ogg/Opus file (looped)")
	fs.BoolVar(&f.create, "create", false, "create the channel if it does not exist (with --channel)")
	fs.IntVar(&f.maxViewers, "max-viewers", master.DefaultMaxViewers, "maximum concurrent viewers; offers beyond it are not answered")
	fs.BoolVar(&f.relay, "relay", false, "use TURN relay candidates only")
	fs.BoolVar(&f.loopback, "loopback-only", false, "gather loopback ICE candidates only (local tests and demos)")
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
	m, err := master.New(master.Config{
		Channel:            channel,
		Control:            ctl,
		HTTPClient:         hc,
		Video:              video,
		Audio:              audio,
		MaxViewers:         f.maxViewers,
		LoopbackOnly:       f.loopback,
		ICETransportPolicy: policy,
		Logger:             log,
	})
	if err != nil {
		closeSources()
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	err = m.Run(ctx) // owns the sources from here on
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
	}
	return nil
}

// openSources opens the video source and the optional audio source.
func (f *masterFlags) openSources(env *Env, log *slog.Logger) (video, audio media.Source, err error) {
	scfg := media.SourceConfig{FPS: f.fps, Logger: log}
	switch f.source {
	case "testsrc":
		video, err = media.NewTestSource(rtc.CodecH264, scfg)
	case "testsrc-vp8":
		video, err = media.NewTestSource(rtc.CodecVP8, scfg)
	case "-":
		var in io.Reader = env.Stdin
		if in == nil {
			return nil, nil, fmt.Errorf("%w: --source -: no standard input", ErrUsage)
		}
		video, err = media.NewH264Stream(in, scfg)
	default:
		video, err = openFile("--source", f.source, scfg)
	}
	if err != nil {
		return nil, nil, err
	}
	if c := video.Codec(); c != rtc.CodecH264 && c != rtc.CodecVP8 {
		video.Close()
		return nil, nil, fmt.Errorf("%w: --source %s is %s audio; give a video (.h264 or .ivf) and pass audio with --audio-file", ErrUsage, f.source, c)
	}
	switch {
	case f.audio:
		audio, err = media.NewTestSource(rtc.CodecOpus, scfg)
	case f.audioFile != "":
		audio, err = openFile("--audio-file", f.audioFile, scfg)
		if err == nil && audio.Codec() != rtc.CodecOpus {
			audio.Close()
			err = fmt.Errorf("%w: --audio-file %s is %s video; give an Ogg/Opus file (ffmpeg -i IN -vn -c:a libopus out.ogg)", ErrUsage, f.audioFile, audio.Codec())
		}
	}
	if err != nil {
		video.Close()
		return nil, nil, err
	}
	return video, audio, nil
}

// openFile opens a media file; a missing or unusable file is a usage
// error.
func openFile(flagName, path string, cfg media.SourceConfig) (media.Source, error) {
	src, err := media.OpenFile(path, cfg)
	switch {
	case err == nil:
		return src, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s %s: no such file", ErrUsage, flagName, path)
	}
	// Unsupported or broken media, a directory, no permission: all are
	// the user's input to fix.
	return nil, fmt.Errorf("%w: %s: %w", ErrUsage, flagName, err)
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
