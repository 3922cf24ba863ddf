//go:build !linux

package node

import "errors"

func reexecInNetns() (code int, started bool, err error) {
	return 0, false, errors.New("network namespaces exist on Linux only")
}

func loopbackUp() error { return errors.New("network namespaces exist on Linux only") }
