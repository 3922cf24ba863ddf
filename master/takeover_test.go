package master_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/signaling"
)

// TestSecondMasterTakesOver: a second master on the same channel takes it
// over (the newest master connection wins); the first one stops with an
// error that says so instead of reconnecting and taking it back, which
// would leave two masters fighting over the channel.
func TestSecondMasterTakesOver(t *testing.T) {
	env := newEnv(t)
	first := startMaster(t, env, false)
	second := startMaster(t, env, false)
	select {
	case <-first.h.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the first master still runs 20 s after a second one took the channel over")
	}
	err := first.stop(t)
	if !errors.Is(err, signaling.ErrTakenOver) || !strings.Contains(err.Error(), "another master") {
		t.Fatalf("the first master ended with %v; want an error naming the takeover (signaling.ErrTakenOver)", err)
	}
	select {
	case <-second.h.Done():
		t.Fatalf("the second master stopped too: %v", second.stop(t))
	case <-time.After(500 * time.Millisecond):
	}
}
