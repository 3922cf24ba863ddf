package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	register(command{name: "bench", summary: "measure: signaling load, viewer time to first frame, cold start (bench signaling|viewer|cold-start)", run: runBench})
}

func runBench(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 || (args[0] != "signaling" && args[0] != "viewer" && args[0] != "cold-start") {
		fmt.Fprintln(env.Stderr, "Usage: kvsrtc bench signaling [flags]   load a signaling service (default: kvsrtc local in a child process)")
		fmt.Fprintln(env.Stderr, "       kvsrtc bench viewer [flags]      viewer connects to a local master: time to first frame")
		fmt.Fprintln(env.Stderr, "       kvsrtc bench cold-start [flags]  a new kvsrtc view process each time: exec to first frame")
		return fmt.Errorf("%w: say what to measure: signaling, viewer or cold-start", ErrUsage)
	}
	switch args[0] {
	case "signaling":
		return benchSignaling(ctx, env, args[1:])
	case "cold-start":
		return benchColdStart(ctx, env, args[1:])
	}
	return benchViewer(ctx, env, args[1:])
}

func benchSignaling(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bench signaling", "[flags]")
	var cfg loadtest.Config
	var lf logFlags
	var where string
	fs.StringVar(&cfg.Endpoint, "endpoint-url", "", "control-plane URL of the service to load (default: start kvsrtc local, see --service)")
	fs.StringVar(&where, "service", serviceProcess, `without --endpoint-url, where kvsrtc local runs: "process" (a child process, as in docs/BENCHMARKS.md) or "in-process" (shares this process's open files, CPU and garbage collector: half the connections, and a higher p99 with many)`)
	fs.IntVar(&cfg.Channels, "channels", 100, "channels, each with one master")
	fs.IntVar(&cfg.ViewersPerChannel, "viewers", 10, "viewers per channel")
	fs.Float64Var(&cfg.Rate, "rate", 2000, "viewer->master messages per second in total (masters echo each, so twice as many are routed)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	lf.registerLevel(fs, "warn")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if where != serviceProcess && where != serviceInProcess {
		return fmt.Errorf("%w: --service %q: want %q or %q", ErrUsage, where, serviceProcess, serviceInProcess)
	}
	if cfg.Channels < 1 || cfg.ViewersPerChannel < 0 {
		return fmt.Errorf("%w: --channels must be at least 1 and --viewers not negative", ErrUsage)
	}
	log, err := lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	// Check the open-file limit before starting anything: every connection
	// is one descriptor in the generator and one in the service.
	procs := 1
	if cfg.Endpoint == "" && where == serviceInProcess {
		procs = 2
	}
	conns := cfg.Channels * (1 + cfg.ViewersPerChannel)
	if limit, err := fileLimit(); err == nil && uint64(procs)*loadtest.FilesNeeded(conns) > limit {
		fit := loadtest.MaxChannels(limit, cfg.ViewersPerChannel, procs)
		hint := ""
		if procs == 2 {
			hint = fmt.Sprintf(" (the generator and an in-process service each hold every connection; --service %s fits %d)",
				serviceProcess, loadtest.MaxChannels(limit, cfg.ViewersPerChannel, 1))
		}
		return &exitError{code: 2, err: fmt.Errorf("%w: %d connections need about %d open files but the limit is %d (ulimit -n)%s: use at most --channels %d with --viewers %d, or raise the hard limit",
			loadtest.ErrFileLimit, conns, uint64(procs)*loadtest.FilesNeeded(conns), limit, hint, fit, cfg.ViewersPerChannel)}
	}
	mode := "external service at " + cfg.Endpoint
	switch {
	case cfg.Endpoint != "":
	case where == serviceInProcess:
		srv, err := emulator.Start(ctx, emulator.Config{DisableQuotas: true, TURNDisabled: true, Logger: log})
		if err != nil {
			return err
		}
		defer srv.Close()
		cfg.Endpoint, cfg.AdminToken = srv.URL(), srv.AdminToken()
		mode = "in-process kvsrtc local (the generator shares the service's CPU and garbage collector: with many connections the p99 is higher than with a separate service process, see docs/BENCHMARKS.md)"
		fmt.Fprintf(env.Stdout, "service: in-process kvsrtc local at %s (quotas off; memory figures include the load generator)\n", srv.URL())
	default:
		child, err := startChildService(ctx, env.Stderr, lf.level)
		if err != nil {
			return err
		}
		defer func() {
			if err := child.stop(); err != nil {
				log.Warn("stopping the service process", "err", err)
			}
		}()
		cfg.Endpoint, cfg.AdminToken = child.url, child.token
		mode = fmt.Sprintf("kvsrtc local in a separate process (pid %d), the set-up of the figures in docs/BENCHMARKS.md", child.cmd.Process.Pid)
		fmt.Fprintf(env.Stdout, "service: kvsrtc local in a child process (pid %d) at %s (quotas off)\n", child.cmd.Process.Pid, child.url)
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = env.Getenv(emulator.AdminTokenEnv) // for the service's figures from /_kvsrtc/stats
	}
	res, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(env.Stdout, res.String())
	fmt.Fprintf(env.Stdout, "mode:          %s\n", mode)
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
	srv, ctl, stop, err := startBenchCamera(ctx, emulator.Config{}, log)
	if err != nil {
		return err
	}
	defer stop()

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

// startBenchCamera starts, in this process, a local service (quotas off,
// channel "bench", cfg's other fields as given) and a master streaming the
// H.264 test pattern on it, for the benchmarks. stop ends both and waits.
func startBenchCamera(ctx context.Context, cfg emulator.Config, log *slog.Logger) (*emulator.Server, *control.Client, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	cfg.DisableQuotas, cfg.Channels, cfg.Logger = true, []string{"bench"}, log
	srv, err := emulator.Start(ctx, cfg)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	fail := func(err error) (*emulator.Server, *control.Client, func(), error) {
		cancel()
		_ = srv.Close()
		return nil, nil, nil, err
	}
	c := srv.Credentials()
	ctl, err := control.New(ctx, control.Config{Region: srv.Region(), EndpointURL: srv.URL(), STUNURL: control.STUNNone,
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")})
	if err != nil {
		return fail(err)
	}
	src, err := media.NewTestSource(rtc.CodecH264, media.SourceConfig{})
	if err != nil {
		return fail(err)
	}
	m, err := master.New(master.Config{Channel: "bench", Control: ctl, Video: src, LoopbackOnly: true, Logger: log})
	if err != nil {
		_ = src.Close()
		return fail(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = m.Run(ctx) }()
	stop := func() {
		cancel()
		wg.Wait()
		_ = srv.Close()
	}
	return srv, ctl, stop, nil
}
