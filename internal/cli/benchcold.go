package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
)

// coldRun is one cold "kvsrtc view" process.
type coldRun struct {
	firstEvent time.Duration // process start to its first --json event
	firstFrame time.Duration // process start to the event with the first frame
	session    time.Duration // the session's own time to first frame (from Run)
}

// benchColdStart measures "kvsrtc view" as a user runs it: a new process
// each time, from exec to the first frame, against a local service and
// master in this process. Several --binary values are run interleaved, so
// that machine noise hits them alike.
func benchColdStart(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bench cold-start", "[flags]")
	var (
		runs     int
		binaries stringList
		lf       logFlags
	)
	fs.IntVar(&runs, "runs", 20, "cold runs of each binary")
	fs.Var(&binaries, "binary", "kvsrtc binary to measure (repeatable; default: this one)")
	lf.registerLevel(fs, "error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if runs < 1 {
		return fmt.Errorf("%w: --runs must be at least 1", ErrUsage)
	}
	if len(binaries) == 0 {
		if flag.Lookup("test.run") != nil {
			return errors.New("this is a test binary: give --binary")
		}
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this binary: %w (give --binary)", err)
		}
		binaries = stringList{exe}
	}
	log, err := lf.logger(env.Stderr)
	if err != nil {
		return err
	}
	srv, _, stop, err := startBenchCamera(ctx, emulator.Config{TURNDisabled: true}, log)
	if err != nil {
		return err
	}
	defer stop()

	// The child's environment: this one (a user's AWS_CA_BUNDLE, proxy
	// and profile settings cost start-up time too) with the local
	// service's endpoint, region and keys.
	childEnv := append(os.Environ(), srv.Env()...)
	bundle := "unset"
	for _, kv := range childEnv {
		if v, ok := strings.CutPrefix(kv, "AWS_CA_BUNDLE="); ok {
			bundle = v
		}
	}

	// One warm-up run per binary (page cache, the master's first GOP).
	results := make([][]coldRun, len(binaries))
	for i := -1; i < runs && ctx.Err() == nil; i++ {
		for b, bin := range binaries {
			r, err := coldView(ctx, bin, childEnv)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", bin, i+1, err)
			}
			if i >= 0 {
				results[b] = append(results[b], r)
			}
		}
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	fmt.Fprintf(env.Stdout, "cold kvsrtc view, %d runs each (medians), against %s (service and master in this process), AWS_CA_BUNDLE %s:\n", runs, srv.URL(), bundle)
	fmt.Fprintf(env.Stdout, "%-40s %12s %12s %12s %12s %7s\n", "binary", "first event", "first frame", "session", "start-up", "ratio")
	for b, bin := range binaries {
		var ev, ff, ss, su []time.Duration
		for _, r := range results[b] {
			ev = append(ev, r.firstEvent)
			ff = append(ff, r.firstFrame)
			ss = append(ss, r.session)
			su = append(su, r.firstFrame-r.session)
		}
		fmt.Fprintf(env.Stdout, "%-40s %12v %12v %12v %12v %7.2f\n", bin, pct(ev, 0.5), pct(ff, 0.5), pct(ss, 0.5), pct(su, 0.5),
			float64(pct(ff, 0.5))/float64(pct(ss, 0.5)))
	}
	fmt.Fprintln(env.Stdout, "first event/frame: from exec to the line on stdout; session: the viewer's own time to first frame (from Session.Run);")
	fmt.Fprintln(env.Stdout, "start-up: first frame - session (process start, flags, AWS configuration); ratio: first frame / session (goal <= 1.5)")
	return nil
}

// coldView runs "bin view --json" once and times its output.
func coldView(ctx context.Context, bin string, env []string) (coldRun, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "view", "--channel", "bench", "--loopback-only", "--json", "--duration", "1ms")
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		return coldRun{}, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return coldRun{}, err
	}
	var r coldRun
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		now := time.Since(start)
		if r.firstEvent == 0 {
			r.firstEvent = now
		}
		var e struct {
			TimeToFirstFrameMs float64 `json:"timeToFirstFrameMs"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.TimeToFirstFrameMs > 0 && r.firstFrame == 0 {
			r.firstFrame = now
			r.session = time.Duration(e.TimeToFirstFrameMs * float64(time.Millisecond))
		}
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return r, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if r.firstFrame == 0 {
		return r, errors.New("no first frame reported")
	}
	return r, nil
}
