//go:build linux

package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"
)

// reexecInNetns runs this test binary again, with the same arguments, in a
// new network namespace (it needs root: CAP_SYS_ADMIN), and returns its exit
// code. The child finds netnsEnv set and brings its loopback interface up.
// started is false when the child could not be created.
func reexecInNetns() (code int, started bool, err error) {
	if os.Geteuid() != 0 {
		return 0, false, errors.New("not running as root, so no network namespace can be made (run the test as root, as CI does)")
	}
	self, err := os.Executable()
	if err != nil {
		return 0, false, err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that started the child exits: keep
	// this goroutine on its thread until the child is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return 0, false, fmt.Errorf("creating a network namespace: %w", err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), true, nil
	}
	if err != nil {
		return 1, true, err
	}
	return 0, true, nil
}

// loopbackUp sets the flag IFF_UP on the interface "lo" of the current
// network namespace (a new namespace starts with it down).
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	defer syscall.Close(fd)
	// struct ifreq: a 16-byte name, then a union whose first member is
	// the short ifr_flags.
	var ifr [40]byte
	copy(ifr[:], "lo")
	flags := (*uint16)(unsafe.Pointer(&ifr[syscall.IFNAMSIZ]))
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return fmt.Errorf("loopback up: SIOCGIFFLAGS: %w", e)
	}
	*flags |= syscall.IFF_UP
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return fmt.Errorf("loopback up: SIOCSIFFLAGS: %w", e)
	}
	return nil
}
