package emulator

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFileName is the file in Config.DataDir that a running Server holds
// locked (flock) and that names its process id and URL.
const LockFileName = "kvsrtc.lock"

// ErrDataDirInUse is matched (errors.Is) by the error Start returns when
// another Server, in this process or another, uses the same Config.DataDir.
// errors.As with *DataDirInUseError gives the holder.
var ErrDataDirInUse = errors.New("emulator: data dir in use")

// DataDirInUseError names the Server that holds a data directory.
type DataDirInUseError struct {
	// Dir is the data directory.
	Dir string
	// PID is the holder's process id; 0 when the lock file does not say.
	PID int
	// URL is the holder's endpoint; "" while it is still starting.
	URL string
}

func (e *DataDirInUseError) Error() string {
	who := "another kvsrtc local"
	if e.PID != 0 {
		who += fmt.Sprintf(" (pid %d", e.PID)
		if e.URL != "" {
			who += ", listening on " + e.URL
		} else {
			who += ", still starting"
		}
		who += ")"
	}
	return fmt.Sprintf("emulator: data dir %s is in use by %s; stop that one or use another --data-dir", e.Dir, who)
}

// Is makes errors.Is(err, ErrDataDirInUse) true.
func (e *DataDirInUseError) Is(target error) bool { return target == ErrDataDirInUse }

var errLockHeld = errors.New("lock held")

// dirLock is the held lock on a data directory. The lock file stays in
// place when released: removing it would let two processes lock two
// different files of the same name.
type dirLock struct {
	f *os.File
}

// lockDataDir locks dir for this Server and records pid (and later the URL)
// in the lock file.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("emulator: data dir lock: %w", err)
	}
	if err := tryLock(f); err != nil {
		_ = f.Close()
		if errors.Is(err, errLockHeld) {
			e := &DataDirInUseError{Dir: dir}
			if raw, rerr := os.ReadFile(path); rerr == nil {
				e.PID, e.URL = parseLockFile(string(raw))
			}
			return nil, e
		}
		return nil, fmt.Errorf("emulator: locking data dir %s: %w", dir, err)
	}
	l := &dirLock{f: f}
	if err := l.write(""); err != nil {
		l.release()
		return nil, fmt.Errorf("emulator: writing %s: %w", path, err)
	}
	return l, nil
}

// write records this process and url in the lock file.
func (l *dirLock) write(url string) error {
	s := fmt.Sprintf("pid %d\n", os.Getpid())
	if url != "" {
		s += "url " + url + "\n"
	}
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	_, err := l.f.WriteAt([]byte(s), 0)
	return err
}

// release empties the lock file and unlocks it.
func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = l.f.Truncate(0)
	_ = l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
}

// parseLockFile reads the "pid N" and "url U" lines.
func parseLockFile(s string) (pid int, url string) {
	for line := range strings.Lines(s) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch k {
		case "pid":
			pid, _ = strconv.Atoi(v)
		case "url":
			url = v
		}
	}
	return pid, url
}

// staleTempPrefixes are the temporary files writeFileAtomic leaves behind
// when the process dies between create and rename.
var staleTempPrefixes = []string{".channels.json.tmp", ".cert.pem.tmp", ".key.pem.tmp"}

// removeStaleTemps deletes temporary files of interrupted writes in dir.
// The caller holds the directory's lock, so no live writer owns them.
func removeStaleTemps(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	_ = d.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, n := range names {
		for _, p := range staleTempPrefixes {
			if strings.HasPrefix(n, p) {
				if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				} else {
					removed = append(removed, n)
				}
				break
			}
		}
	}
	return removed, errors.Join(errs...)
}
