package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/emulator/loadtest"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

func init() {
	register(command{name: "bench", summary: "measure: signaling load (bench signaling) or viewer time to first frame (bench viewer)", run: runBench})
}

func runBench(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 || (args[0] != "signaling" && args[0] != "viewer") {
		fmt.Fprintln(env.Stderr, "Usage: kvsrtc bench signaling [flags]   load a signaling service (default: an in-process kvsrtc local)")
		fmt.Fprintln(env.Stderr, "       kvsrtc bench viewer [flags]      viewer connects to a local master: time to first frame")
		return fmt.Errorf("%w: say what to measure: signaling or viewer", ErrUsage)
	}
	if args[0] == "signaling" {
		return benchSignaling(ctx, env, args[1:])
	}
	return benchViewer(ctx, env, args[1:])
}

func benchSignaling(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bench signaling", "[flags]")
	var cfg loadtest.Config
	var lf logFlags
	fs.StringVar(&cfg.Endpoint, "endpoint-url", "", "control-plane URL of the service to load (default: start kvsrtc local in this process)")
	fs.IntVar(&cfg.Channels, "channels", 100, "channels, each with one master")
	fs.IntVar(&cfg.ViewersPerChannel, "viewers", 10, "viewers per channel")
	fs.Float64Var(&cfg.Rate, "rate", 2000, "viewer->master messages per second in total (masters echo each, so twice as many are routed)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	lf.registerLevel(fs, "warn")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	if cfg.Endpoint == "" {
		srv, err := emulator.Start(ctx, emulator.Config{DisableQuotas: true, Logger: log})
		if err != nil {
			return err
		}
		defer srv.Close()
		cfg.Endpoint = srv.URL()
		fmt.Fprintf(env.Stdout, "service: in-process kvsrtc local at %s (quotas off; memory figures include the load generator)\n", srv.URL())
	}
	res, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, res.String())
	return nil
}

func benchViewer(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bench viewer", "[flags]")
	var (
		connects int
		lost     int
		lf       logFlags
	)
	fs.IntVar(&connects, "connects", 100, "sequential viewer connects to measure time to first frame")
	fs.IntVar(&lost, "lost-answer", 5, "connects whose first answer is dropped (recovery time)")
	lf.registerLevel(fs, "error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if connects < 1 || lost < 0 {
		return fmt.Errorf("%w: --connects must be at least 1 and --lost-answer not negative", ErrUsage)
	}
	log, err := lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv, err := emulator.Start(ctx, emulator.Config{DisableQuotas: true, Channels: []string{"bench"}, Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	c := srv.Credentials()
	ctl, err := control.New(ctx, control.Config{Region: srv.Region(), EndpointURL: srv.URL(), STUNURL: control.STUNNone,
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")})
	if err != nil {
		return err
	}
	src, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		return err
	}
	m, err := master.New(master.Config{Channel: "bench", Control: ctl, Video: src, LoopbackOnly: true, Logger: log})
	if err != nil {
		_ = src.Close()
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = m.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	measure := func(policy viewer.RetryPolicy) (time.Duration, int, error) {
		var ttff time.Duration
		s, err := viewer.New(viewer.Config{Channel: "bench", Control: ctl, LoopbackOnly: true, Retry: policy, Duration: time.Millisecond, Logger: log,
			OnEvent: func(e viewer.Event) {
				if e.TimeToFirstFrame > 0 {
					ttff = e.TimeToFirstFrame
				}
			}})
		if err != nil {
			return 0, 0, err
		}
		if err := s.Run(ctx); err != nil {
			return 0, 0, err
		}
		if ttff == 0 {
			return 0, 0, errors.New("no video")
		}
		return ttff, s.Summary().Attempts, nil
	}
	var ttffs []time.Duration
	retries := 0
	for i := 0; i < connects && ctx.Err() == nil; i++ {
		d, n, err := measure(viewer.RetryPolicy{})
		if err != nil {
			return fmt.Errorf("connect %d: %w", i+1, err)
		}
		ttffs = append(ttffs, d)
		retries += n - 1
	}
	fmt.Fprintf(env.Stdout, "time to first frame over %d connects: p50 %v  p90 %v  p99 %v  max %v  (needless retries: %d)\n",
		len(ttffs), pct(ttffs, 0.5), pct(ttffs, 0.9), pct(ttffs, 0.99), pct(ttffs, 1), retries)
	var rec []time.Duration
	for i := 0; i < lost && ctx.Err() == nil; i++ {
		if _, err := srv.Inject(emulator.Fault{Kind: emulator.FaultDrop, Channel: "bench", Action: kvsproto.ActionSDPAnswer, Count: 1}); err != nil {
			return err
		}
		d, n, err := measure(viewer.RetryPolicy{})
		if err != nil {
			return fmt.Errorf("lost-answer connect %d: %w", i+1, err)
		}
		if n != 2 {
			return fmt.Errorf("lost-answer connect %d took %d attempts, want 2", i+1, n)
		}
		rec = append(rec, d)
	}
	if len(rec) > 0 {
		fmt.Fprintf(env.Stdout, "time to video when the first answer is lost, over %d connects: p50 %v  max %v  (the seed's logic: 19s)\n",
			len(rec), pct(rec, 0.5), pct(rec, 1))
	}
	return nil
}

// pct returns the p-th percentile (nearest rank) of d, rounded for display.
func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))].Round(100 * time.Microsecond)
}
