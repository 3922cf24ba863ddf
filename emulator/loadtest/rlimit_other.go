//go:build !unix

package loadtest

// raiseFileLimit is a no-op where there is no RLIMIT_NOFILE.
func raiseFileLimit() (uint64, error) { return 1 << 20, nil }
