package hub

import (
	"testing"

	"go.uber.org/goleak"
)

func goleakVerifyNone(t *testing.T) {
	t.Helper()
	goleak.VerifyNone(t)
}
