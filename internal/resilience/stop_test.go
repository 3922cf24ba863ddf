package resilience

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// recordingTB records Errorf calls (the helper under test reports there).
type recordingTB struct {
	testing.TB
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestMasterStopChecksRunError: stopping a master whose Run returned an
// error fails the test instead of dropping the error; a clean stop (Run
// returns nil when its context ends) does not.
func TestMasterStopChecksRunError(t *testing.T) {
	for _, runErr := range []error{errors.New("signaling refused"), nil} {
		rec := &recordingTB{TB: t}
		_, cancel := context.WithCancel(context.Background())
		r := &mrun{t: rec, cancel: cancel, done: make(chan error, 1)}
		r.done <- runErr
		r.stop()
		r.stop() // idempotent
		if got := len(rec.errs); (runErr != nil) != (got == 1) || got > 1 {
			t.Errorf("Run error %v: %d reports %q", runErr, got, rec.errs)
		}
	}
}
