package control

import "time"

// SetCacheClock replaces the clock of an ICECache (tests only).
func (ic *ICECache) SetCacheClock(now func() time.Time) { ic.now = now }
