//go:build !linux

package cli

import "os/exec"

// setParentDeathSignal does nothing where there is no parent-death signal:
// the child is stopped by bench signaling itself.
func setParentDeathSignal(*exec.Cmd) {}
