package relay

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/viewer"
)

func TestConfigErrors(t *testing.T) {
	ctl := &control.Client{}
	for _, tc := range []struct {
		name string
		cfg  Config
		says string
	}{
		{"no control", Config{}, "Config.Control is required"},
		{"negative delay", Config{Control: ctl, RestartDelay: -time.Second}, "RestartDelay"},
		{"negative peers", Config{Control: ctl, MaxPeers: -1}, "MaxPeers"},
		{"negative floor idle", Config{Control: ctl, Talk: true, FloorIdle: -time.Second}, "FloorIdle"},
		{"bad warm channel", Config{Control: ctl, Warm: []string{"bad name!"}}, "Warm"},
		{"bad port range", Config{Control: ctl, ICEPortMin: 5000}, "ICEPortMax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.cfg)
			if err == nil {
				_ = r.Close()
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("New: %v; want ErrInvalidConfig naming %s", err, tc.says)
			}
		})
	}
}

func TestStateFor(t *testing.T) {
	for _, tc := range []struct {
		v        viewer.State
		cur      State
		streamed bool
		want     State
	}{
		{viewer.StateConnecting, StateConnecting, false, StateConnecting},
		{viewer.StateAwaitingAnswer, StateConnecting, false, StateConnecting},
		{viewer.StateStreaming, StateConnecting, false, StateStreaming},
		{viewer.StateReconnecting, StateStreaming, true, StateReconnecting},
		{viewer.StateConnecting, StateReconnecting, true, StateReconnecting},
		{viewer.StateAwaitingAnswer, StateOffline, true, StateOffline},
		{viewer.StateFailed, StateReconnecting, true, StateOffline},
		{viewer.StateStreaming, StateOffline, true, StateStreaming},
		{viewer.StateStopped, StateStreaming, true, StateClosed},
	} {
		if got := stateFor(tc.v, tc.cur, tc.streamed); got != tc.want {
			t.Errorf("stateFor(%s, %s, %v) = %s, want %s", tc.v, tc.cur, tc.streamed, got, tc.want)
		}
	}
}
