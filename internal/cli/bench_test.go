package cli

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvsrtc/kvsrtc/emulator/loadtest"
	"github.com/kvsrtc/kvsrtc/internal/testutil"
)

// cliHelperEnv makes the test binary run "kvsrtc ARGS..." (the arguments
// after "--") in TestHelperKvsrtc: it stands in for the kvsrtc binary that
// bench signaling re-executes as its service process.
const cliHelperEnv = "KVSRTC_CLI_TEST_HELPER"

func TestHelperKvsrtc(t *testing.T) {
	if os.Getenv(cliHelperEnv) != "1" {
		return // only a helper process runs this
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := Main(ctx, flag.Args(), os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// useHelperLocal makes bench signaling start this test binary as its
// "kvsrtc local" child process.
func useHelperLocal(t *testing.T) {
	old := localCommand
	t.Cleanup(func() { localCommand = old })
	localCommand = func(args []string) (*exec.Cmd, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(exe, append([]string{"-test.run=^TestHelperKvsrtc$", "--", "local"}, args...)...)
		cmd.Env = append(os.Environ(), cliHelperEnv+"=1")
		return cmd, nil
	}
}

func withFileLimit(t *testing.T, limit uint64) {
	old := fileLimit
	t.Cleanup(func() { fileLimit = old })
	fileLimit = func() (uint64, error) { return limit, nil }
}

func TestBenchSignalingModes(t *testing.T) {
	useHelperLocal(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"service: kvsrtc local in a child process (pid ", "mode:          kvsrtc local in a separate process", "service:       RSS"}},
		{[]string{"--service", "in-process"}, []string{"service: in-process kvsrtc local", "mode:          in-process kvsrtc local", "garbage collector"}},
	} {
		var out, errb testutil.Buffer
		args := append([]string{"bench", "signaling", "--channels", "2", "--viewers", "2", "--rate", "40", "--duration", "500ms"}, tc.args...)
		if code := Main(t.Context(), args, nil, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d\nstdout:\n%s\nstderr:\n%s", tc.args, code, out.String(), errb.String())
		}
		s := out.String()
		for _, w := range append(tc.want, "connections:   6 open, 0 failed") {
			if !strings.Contains(s, w) {
				t.Errorf("%v: output lacks %q:\n%s\nstderr:\n%s", tc.args, w, s, errb.String())
			}
		}
	}
}

func TestBenchSignalingRefusesOverFileLimit(t *testing.T) {
	// 1000 channels of 10 viewers: 11,000 connections.
	for _, tc := range []struct {
		limit uint64
		args  []string
		want  []string
	}{
		// In one process: 2 x (11,000 + reserve) > 20,000.
		{20000, []string{"--service", "in-process"}, []string{"limit is 20000", "--channels 885 ", "--service process fits 1794"}},
		// A separate service process: 11,000 + reserve > 11,000.
		{11000, nil, []string{"limit is 11000", "--channels 976 "}},
	} {
		withFileLimit(t, tc.limit)
		var out, errb testutil.Buffer
		args := append([]string{"bench", "signaling", "--channels", "1000", "--viewers", "10"}, tc.args...)
		code := Main(t.Context(), args, nil, &out, &errb)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2\nstderr:\n%s", tc.args, code, errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("%v: message lacks %q:\n%s", tc.args, w, errb.String())
			}
		}
		if out.String() != "" {
			t.Errorf("%v: started anyway:\n%s", tc.args, out.String())
		}
	}
	withFileLimit(t, 20000)
	err := benchSignaling(t.Context(), &Env{Stdout: &testutil.Buffer{}, Stderr: &testutil.Buffer{}, Getenv: func(string) string { return "" }},
		[]string{"--channels", "1000", "--service", "in-process"})
	if !errors.Is(err, loadtest.ErrFileLimit) {
		t.Errorf("error %v is not loadtest.ErrFileLimit", err)
	}
}

func TestBenchSignalingBadService(t *testing.T) {
	var out, errb testutil.Buffer
	if code := Main(t.Context(), []string{"bench", "signaling", "--service", "cloud"}, nil, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, errb.String())
	}
}

// TestBenchColdStart runs the cold-start measurement with the test binary
// standing in for kvsrtc (through a shell script).
func TestBenchColdStart(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "kvsrtc")
	body := "#!/bin/sh\n" + cliHelperEnv + "=1 exec '" + exe + "' -test.run='^TestHelperKvsrtc$' -- \"$@\"\n"
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	var out, errb testutil.Buffer
	if code := Main(t.Context(), []string{"bench", "cold-start", "--runs", "2", "--binary", script}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	s := out.String()
	for _, w := range []string{"cold kvsrtc view, 2 runs each", script, "ratio"} {
		if !strings.Contains(s, w) {
			t.Errorf("output lacks %q:\n%s", w, s)
		}
	}
	if code := Main(t.Context(), []string{"bench", "cold-start", "--runs", "0", "--binary", script}, nil, &out, &errb); code != 2 {
		t.Errorf("--runs 0: exit %d, want 2", code)
	}
}
