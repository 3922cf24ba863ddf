//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package emulator

import "os"

// tryLock does nothing where flock is not available: the data directory is
// not protected against a second service there.
func tryLock(*os.File) error { return nil }
