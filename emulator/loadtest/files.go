package loadtest

import "errors"

// FileReserve is the open files a process needs besides one per signaling
// WebSocket: standard streams, the listener, REST connections (up to
// ConnectConcurrency, and as many idle ones), the runtime's poller.
const FileReserve = 256

// ErrFileLimit is matched by the error Run returns when the process may not
// open enough files for the connections asked for.
var ErrFileLimit = errors.New("loadtest: open-file limit too low")

// FilesNeeded is the RLIMIT_NOFILE one process holding connections
// WebSockets needs (the load generator, or a service under its load).
func FilesNeeded(connections int) uint64 { return uint64(max(0, connections)) + FileReserve }

// MaxChannels is the largest channel count with viewersPerChannel viewers
// each whose connections fit in limit open files when processes processes
// each hold every connection (2 when generator and service share one
// process); 0 when not even one channel fits.
func MaxChannels(limit uint64, viewersPerChannel, processes int) int {
	per := uint64(max(1, processes))
	if limit/per <= FileReserve {
		return 0
	}
	return int((limit/per - FileReserve) / uint64(1+max(0, viewersPerChannel)))
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns the soft limit now in force (a large number where the system has
// no such limit).
func RaiseFileLimit() (uint64, error) { return raiseFileLimit() }
