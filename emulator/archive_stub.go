package emulator

import "time"

// ArchiveFragment is one fragment of a stream: a fragmented-MP4 media
// segment (moof+mdat) that starts with a keyframe. (Placeholder until the
// archive lands.)
type ArchiveFragment struct {
	Init     []byte
	Media    []byte
	Start    time.Time
	Duration time.Duration
}

// AppendFragment adds a fragment to a stream's archive. (Placeholder.)
func (s *Server) AppendFragment(streamARN string, f ArchiveFragment) error { return nil }
