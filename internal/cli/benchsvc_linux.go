package cli

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel stop the child if this process dies
// first.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
