package viewer

import (
	"github.com/kvsrtc/kvsrtc/retry"
)

// The retry policy and the client ids live in package retry (pion-free, so
// the web player can use them); these names keep the viewer's API.

// RetryPolicy is the viewer's failure budget for getting an SDP answer and
// media: see retry.Policy.
type RetryPolicy = retry.Policy

// DefaultLateAnswerWindow is DefaultRetryPolicy's LateAnswerWindow (see
// retry.DefaultLateAnswerWindow).
const DefaultLateAnswerWindow = retry.DefaultLateAnswerWindow

// DefaultRetryPolicy answers fast (see retry.Default).
func DefaultRetryPolicy() RetryPolicy { return retry.Default() }

// SeedRetryPolicy reproduces the viewer of the blog post kvsrtc started
// from (see retry.Seed).
func SeedRetryPolicy() RetryPolicy { return retry.Seed() }

// ErrInvalidPolicy is matched by every RetryPolicy validation error.
var ErrInvalidPolicy = retry.ErrInvalidPolicy

// ClientIDReuseWindow is how long a generated client id is never handed out
// again (see retry.ClientIDReuseWindow).
const ClientIDReuseWindow = retry.ClientIDReuseWindow

// ClientIDs generates a fresh, valid viewer client id per attempt (see
// retry.ClientIDs).
type ClientIDs = retry.ClientIDs

// ErrClientIDReused is returned by ClientIDs.Use for a client id used within
// ClientIDReuseWindow.
var ErrClientIDReused = retry.ErrClientIDReused
