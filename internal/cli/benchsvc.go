package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/emulator/loadtest"
)

// Where bench signaling runs the service (--service).
const (
	serviceProcess   = "process"
	serviceInProcess = "in-process"
)

// fileLimit raises the open-file soft limit and returns it (a variable for
// tests).
var fileLimit = loadtest.RaiseFileLimit

// localCommand returns the command that runs "kvsrtc local args..." in a
// child process: this binary (a variable for tests, whose binary is not
// kvsrtc).
var localCommand = func(args []string) (*exec.Cmd, error) {
	if flag.Lookup("test.run") != nil {
		// A test binary would run its tests, not kvsrtc local.
		return nil, errors.New("this is a test binary, not kvsrtc: it cannot run kvsrtc local in a child process (use --service in-process)")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this binary to run kvsrtc local in a child process: %w (use --service in-process)", err)
	}
	return exec.Command(exe, append([]string{"local"}, args...)...), nil
}

// childService is a kvsrtc local child process.
type childService struct {
	cmd      *exec.Cmd
	url      string
	token    string
	drained  chan struct{} // closed when the child's stdout is at EOF
	stopOnce bool
}

// startChildService starts kvsrtc local on a free loopback port, with
// quotas and TURN off, and waits for its environment lines.
func startChildService(ctx context.Context, stderr io.Writer, logLevel string) (*childService, error) {
	cmd, err := localCommand([]string{"--listen", "127.0.0.1:0", "--no-quotas", "--no-turn", "--log-level", logLevel})
	if err != nil {
		return nil, err
	}
	cmd.Stderr = stderr
	setParentDeathSignal(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting kvsrtc local: %w", err)
	}
	c := &childService{cmd: cmd, drained: make(chan struct{})}
	env := make(chan map[string]string, 1)
	go func() {
		defer close(c.drained)
		sc := bufio.NewScanner(out)
		vars := map[string]string{}
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if sent {
				continue
			}
			if kv, ok := strings.CutPrefix(line, "export "); ok {
				k, v, _ := strings.Cut(kv, "=")
				vars[k] = shellUnquote(v)
			}
			if strings.HasPrefix(line, "# e.g.:") {
				env <- vars
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case vars := <-env:
		c.url, c.token = vars["AWS_ENDPOINT_URL_KINESIS_VIDEO"], vars[emulator.AdminTokenEnv]
		if c.url == "" {
			_ = c.stop()
			return nil, errors.New("kvsrtc local (child process) printed no AWS_ENDPOINT_URL_KINESIS_VIDEO")
		}
		return c, nil
	case <-c.drained:
		err := cmd.Wait()
		c.stopOnce = true
		return nil, fmt.Errorf("kvsrtc local (child process) exited before it was ready: %v (see its messages above)", err)
	case <-t.C:
		_ = c.stop()
		return nil, errors.New("kvsrtc local (child process) printed no endpoint within 30 s")
	case <-ctx.Done():
		_ = c.stop()
		return nil, context.Cause(ctx)
	}
}

// stop interrupts the child (a graceful Close), kills it after 20 s and
// waits for it.
func (c *childService) stop() error {
	if c.stopOnce {
		return nil
	}
	c.stopOnce = true
	_ = c.cmd.Process.Signal(os.Interrupt)
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-c.drained:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-c.drained
	}
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("kvsrtc local (child process): %w", err)
	}
	return nil
}

// shellUnquote undoes shellQuote.
func shellUnquote(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], `'\''`, `'`)
	}
	return v
}
