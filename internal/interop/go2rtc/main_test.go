//go:build linux

package go2rtctest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// netnsEnv is set in the test binary re-executed inside its own network
// namespace.
const netnsEnv = "KVSRTC_GO2RTC_NETNS"

// hostAddr is go2rtc's only host address inside the namespace (RFC 2544
// benchmarking range: never routed anywhere).
const hostAddr = "198.18.0.1"

// netnsSetup brings lo up and gives the namespace one non-loopback address
// (go2rtc's KVS source ignores loopback interfaces), then runs "$@".
const netnsSetup = `set -e
ip link set lo up
ip link add kvs0 type veth peer name kvs1
ip addr add ` + hostAddr + `/32 dev kvs0
ip link set kvs0 up
ip link set kvs1 up
exec "$@"`

// netnsNote says why the tests run in the current network namespace ("" when
// they run in their own).
var netnsNote string

func TestMain(m *testing.M) {
	if os.Getenv(netnsEnv) == "" {
		code, err := runInNetns()
		if err == nil {
			os.Exit(code)
		}
		netnsNote = err.Error()
	}
	goleak.VerifyTestMain(m)
}

// unshareArgs returns the unshare(1) arguments that make a network namespace
// this process may configure.
func unshareArgs() []string {
	if os.Geteuid() == 0 {
		return []string{"--net"}
	}
	return []string{"--user", "--map-root-user", "--net"}
}

// runInNetns runs this test binary again, with the same arguments, in a new
// network namespace, and returns its exit code. It returns an error, having
// run nothing, when such a namespace cannot be made here.
func runInNetns() (int, error) {
	for _, prog := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(prog); err != nil {
			return 0, fmt.Errorf("no %s on PATH to make a network namespace (Debian packages util-linux, iproute2)", prog)
		}
	}
	probe := exec.Command("unshare", append(unshareArgs(), "sh", "-c", netnsSetup, "sh", "true")...)
	if out, err := probe.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("cannot make a network namespace (unshare %s): %v: %s",
			strings.Join(unshareArgs(), " "), err, strings.TrimSpace(string(out)))
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("cannot find the test binary: %w", err)
	}
	args := append(unshareArgs(), "sh", "-c", netnsSetup, "sh", self)
	cmd := exec.Command("unshare", append(args, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The re-executed tests die with this process (go test's timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return ee.ExitCode(), nil
	default:
		fmt.Fprintf(os.Stderr, "go2rtctest: the tests in their network namespace: %v\n", err)
		return 1, nil
	}
}

// logNetwork says where the test's packets go.
func logNetwork(t *testing.T) {
	t.Helper()
	if netnsNote == "" {
		t.Logf("network: own namespace (lo and %s/32 on a veth pair)", hostAddr)
		return
	}
	t.Logf("network: current namespace (%s); go2rtc's host candidates are this machine's addresses, delivered locally", netnsNote)
}
