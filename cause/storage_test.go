package cause_test

import (
	"fmt"
	"testing"

	"github.com/kvsrtc/kvsrtc/cause"
	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/kvsproto"
)

// TestClassifyStorage: the storage path's errors get their own causes,
// ahead of the generic ones their codes share (a missing stream is a 404
// like a missing channel; the viewer limit is a ClientLimitExceeded like
// throttling).
func TestClassifyStorage(t *testing.T) {
	api := func(code string, status int) error {
		return &control.APIError{Op: "JoinStorageSessionAsViewer", Code: code, StatusCode: status}
	}
	for _, tc := range []struct {
		err   error
		want  cause.Cause
		fatal bool
	}{
		{fmt.Errorf("%w: %w", control.ErrStorageNotConfigured, api(kvsproto.ErrCodeInvalidArgument, 400)), cause.StorageNotConfigured, true},
		{fmt.Errorf("%w: %w", control.ErrStreamNotFound, api(kvsproto.ErrCodeResourceNotFound, 404)), cause.StreamMissing, true},
		{fmt.Errorf("%w: %w", control.ErrStorageViewerLimit, api(kvsproto.ErrCodeClientLimitExceeded, 400)), cause.StorageFull, true},
		{fmt.Errorf("%w: %w", control.ErrJoinerNotConnected, api(kvsproto.ErrCodeResourceNotFound, 404)), cause.SignalingLost, false},
		{fmt.Errorf("attempt: %w", cause.ErrNoStorageOffer), cause.NoStorageOffer, false},
		// Without a storage sentinel the generic classification stands.
		{api(kvsproto.ErrCodeClientLimitExceeded, 400), cause.Throttled, false},
		{api(kvsproto.ErrCodeResourceNotFound, 404), cause.ChannelNotFound, true},
	} {
		c, fatal := cause.Classify(tc.err)
		if c != tc.want || fatal != tc.fatal {
			t.Errorf("Classify(%v) = %s, %v; want %s, %v", tc.err, c, fatal, tc.want, tc.fatal)
		}
		if c.Advice() == "" {
			t.Errorf("cause %s has no advice", c)
		}
	}
}
