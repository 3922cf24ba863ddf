package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/player"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

func init() {
	register(command{name: "demo", summary: "everything on one machine: local KVS service, a test-pattern camera, a viewer and the web player", run: runDemo})
}

const demoChannel = "demo"

// demoSignInTTL is how long the demo's one-time sign-in link works: the
// demo's whole run, within reason (it is printed once, at the start).
const demoSignInTTL = 12 * time.Hour

func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "demo", "[flags]")
	var (
		listen   string
		web      string
		duration time.Duration
		codec    string
		talkDir  string
		mode     string
		lf       logFlags
	)
	fs.StringVar(&listen, "listen", defaultLocalListen, "address of the local KVS service (a free port is used if this one is taken)")
	fs.StringVar(&web, "web", defaultServeListen, `address of the web player (a free port is used if this one is taken; "-" for none)`)
	fs.DurationVar(&duration, "duration", 0, "stop after the viewer has streamed this long (default: until Ctrl-C)")
	fs.StringVar(&codec, "codec", "H264", "video codec of the test pattern: H264 or VP8")
	fs.StringVar(&mode, "mode", string(player.ModeDirect), "how the web player's page reaches the camera: direct, relay (through the player server, over WHEP) or auto (see kvsrtc serve --mode)")
	fs.StringVar(&talkDir, "talkback-dir", "", "where the camera records what viewers say with push-to-talk (one Ogg/Opus file per viewer; default: a new temporary directory, kept)")
	lf.registerLevel(fs, "warn")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// The web player's relay (--mode relay|auto), shaped as kvsrtc serve's.
	rf := serveFlags{channels: stringList{demoChannel}, loopback: true, data: true, mode: mode}
	if err := rf.checkRelayFlags(); err != nil {
		return err
	}
	vc, err := rtc.ParseCodec(codec)
	if err != nil || vc == rtc.CodecOpus {
		return fmt.Errorf("%w: --codec %q: want H264 or VP8", ErrUsage, codec)
	}
	log, err := lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// 1. The local KVS service.
	ecfg := emulator.Config{Addr: listen, Channels: []string{demoChannel}, Logger: log.With("component", "local")}
	srv, err := emulator.Start(ctx, ecfg)
	if err != nil && listen == defaultLocalListen && errors.Is(err, syscall.EADDRINUSE) {
		ecfg.Addr = "127.0.0.1:0"
		srv, err = emulator.Start(ctx, ecfg)
	}
	if err != nil {
		return fmt.Errorf("starting the local KVS service: %w", err)
	}
	defer srv.Close()
	creds := srv.Credentials()
	ctl, err := control.New(ctx, control.Config{
		Region: srv.Region(), EndpointURL: srv.URL(), STUNURL: control.STUNNone, Logger: log,
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
	})
	if err != nil {
		return err
	}

	// 2. The camera: a master sending the embedded test pattern, recording
	// talk-back and echoing data channel messages.
	if talkDir == "" {
		if talkDir, err = os.MkdirTemp("", "kvsrtc-demo-talkback-"); err != nil {
			return fmt.Errorf("a directory for talk-back recordings: %w (give one with --talkback-dir)", err)
		}
		// Kept with its recordings; removed if nobody talked (Remove
		// fails on a directory that is not empty).
		defer func(dir string) { _ = os.Remove(dir) }(talkDir)
	}
	talkback, err := master.RecordTalkback(talkDir)
	if err != nil {
		return fmt.Errorf("--talkback-dir %s: %w", talkDir, err)
	}
	src, err := media.NewTestSource(vc, media.SourceConfig{})
	if err != nil {
		return err
	}
	m, err := master.New(master.Config{Channel: demoChannel, Control: ctl, Video: src, LoopbackOnly: true, Logger: log.With("component", "master"),
		Talkback: talkback, EchoData: true})
	if err != nil {
		_ = src.Close()
		return err
	}
	var wg sync.WaitGroup
	masterErr := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); masterErr <- m.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	fmt.Fprintf(env.Stdout, "kvsrtc demo: local KVS service at %s, camera (%s test pattern) on channel %q\n", srv.URL(), vc, demoChannel)
	fmt.Fprintf(env.Stdout, "kvsrtc demo: the camera records what viewers say (push-to-talk) in %s and echoes data channel messages\n", talkDir)

	// 3. The web player, on a generated access token. With a free port for
	// the service (--listen HOST:0) it gets a free port too.
	webSet := false
	fs.Visit(func(f *flag.Flag) { webSet = webSet || f.Name == "web" })
	if _, port, err := net.SplitHostPort(listen); !webSet && err == nil && port == "0" {
		web = "127.0.0.1:0"
	}
	if web != "-" {
		token, err := randomToken()
		if err != nil {
			return err
		}
		// The page: push-to-talk (on by default) and the data console.
		pcfg := player.Config{Control: ctl, Channels: []string{demoChannel}, Auth: token, LoopbackOnly: true, Data: true, Logger: log.With("component", "player")}
		if rf.whep {
			closeRelay, err := rf.mountRelay(&pcfg, ctl, nil, log.With("component", "relay"))
			if err != nil {
				return err
			}
			defer closeRelay()
		}
		p, err := startPlayer(ctx, pcfg, web, nil)
		if err != nil && web == defaultServeListen && errors.Is(err, syscall.EADDRINUSE) {
			p, err = startPlayer(ctx, pcfg, "127.0.0.1:0", nil)
		}
		if err != nil {
			return fmt.Errorf("starting the web player: %w", err)
		}
		defer func() { _ = p.wait() }()
		defer cancel()
		fmt.Fprintf(env.Stdout, "kvsrtc demo: live video in your browser: %s\n", p.signInURL(demoSignInTTL))
		fmt.Fprintf(env.Stdout, "kvsrtc demo: (a one-time link; other browsers sign in with the token %s)\n", token)
		if rf.whep {
			fmt.Fprintf(env.Stdout, "kvsrtc demo: mode %s: %s\n", mode, modeWords[mode])
		}
		fmt.Fprintf(env.Stdout, "kvsrtc demo: in the page, hold \"Hold to talk\" to talk to the camera; \"Data\" opens the data channel console\n")
	}

	// 4. The viewer, with its live status.
	status := newStatusLine(env.Stdout, isTerminal(env.Stdout))
	var once sync.Once
	vcfg := viewer.Config{Channel: demoChannel, Control: ctl, LoopbackOnly: true, Duration: duration, Logger: log.With("component", "viewer"),
		OnEvent: func(e viewer.Event) {
			status.event(e)
			if e.State == viewer.StateStreaming && e.TimeToFirstFrame > 0 {
				once.Do(func() { printNext(env.Stdout, srv) })
			}
		}}
	sess, err := viewer.New(vcfg)
	if err != nil {
		return err
	}
	stop := status.run(sess)
	runErr := sess.Run(ctx)
	stop()
	sum := sess.Summary()
	status.summary(sum, "")
	cancel()
	wg.Wait()
	if err := <-masterErr; err != nil && !errors.Is(err, context.Canceled) && runErr == nil {
		runErr = fmt.Errorf("master: %w", err)
	}
	if runErr != nil {
		var se *viewer.SessionError
		if errors.As(runErr, &se) {
			return errors.New(se.Diagnosis())
		}
		return runErr
	}
	if sum.Frames == 0 {
		return &exitError{code: 1, err: errors.New("no video arrived")}
	}
	return nil
}

// printNext says what to try while the demo runs.
func printNext(w io.Writer, srv *emulator.Server) {
	var env []string
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env = append(env, k+"="+shellQuote(v))
	}
	env = append(env, emulator.AdminTokenEnv+"="+shellQuote(srv.AdminToken()))
	fmt.Fprintf(w, `
Video is flowing. While this runs, in another terminal:
  export %s
  go run ./cmd/kvsrtc view --channel %[2]s --loopback-only --record demo.mkv --duration 5s
  go run ./cmd/kvsrtc view --channel %[2]s --loopback-only --talk tone --data --duration 5s
      (talks to the camera, which records it in the talk-back directory above; type lines: they come back)
  aws kinesisvideo describe-signaling-channel --channel-name %[2]s
  curl -X POST -H "Authorization: Bearer $%[4]s" %[3]s/_kvsrtc/faults -d 'drop,action=SDP_ANSWER,count=1,channel=%[2]s'
      (the next viewer's answer is lost; watch it recover on its second attempt)
Press Ctrl-C to stop.

`, strings.Join(env, " "), demoChannel, srv.URL(), emulator.AdminTokenEnv)
}
