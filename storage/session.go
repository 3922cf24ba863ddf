package storage

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsrtc/kvsrtc/emulator"
	"github.com/kvsrtc/kvsrtc/kvsproto"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
)

// session is one channel's storage session: the camera's link, the
// viewers' links, the fan-out and the recording.
type session struct {
	e                    *Engine
	arn, name, streamARN string
	log                  *slog.Logger
	video, audio         *media.Broadcaster

	mu       sync.Mutex
	ended    bool
	master   *link // the camera's newest link
	feeding  *link // the camera link whose media is used (the newest once it sends a keyframe)
	viewers  map[string]*link
	record   func(emulator.ArchiveFragment) error
	rec      *recorder
	talker   *link
	talkLast time.Time
	gate     media.FeedGate // video waits for a keyframe of each new camera stream
	camAudio bool           // the camera sends audio
	gopDur   time.Duration  // media time since the camera's last keyframe
	askAt    time.Duration  // gopDur at which the recording asks for a keyframe
	askKey   func()         // asks the camera for a keyframe (requestKeyframe)

	bytesIn, framesIn, audioIn, talk atomic.Uint64
}

func newSession(e *Engine, p emulator.StorageParticipant) *session {
	s := &session{
		e: e, arn: p.ChannelARN, name: p.ChannelName, streamARN: p.StreamARN,
		log:     e.log.With("channel", p.ChannelName),
		viewers: map[string]*link{},
	}
	s.askKey = s.requestKeyframe
	s.video = media.NewFedBroadcaster(rtc.CodecH264, media.BroadcasterConfig{Logger: s.log, OnKeyframeNeeded: s.requestKeyframe})
	s.audio = media.NewFedBroadcaster(rtc.CodecOpus, media.BroadcasterConfig{Logger: s.log})
	s.log.Info("storage session started", "stream_arn", p.StreamARN)
	return s
}

// join replaces the participant's link with a new one, which offers.
func (s *session) join(p emulator.StorageParticipant) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	var old *link
	l := newLink(s, p)
	if p.Role == kvsproto.RoleMaster {
		// Make before break: the camera's earlier link goes on feeding
		// the viewers and the recording until the new one delivers a
		// keyframe (or ends), so a re-join leaves no gap.
		old, s.master = s.master, l
		if old != nil && old != s.feeding {
			s.mu.Unlock()
			old.close("replaced by a new join")
			s.mu.Lock()
		}
		old = nil
		if p.Record != nil {
			s.record = p.Record
		}
	} else {
		old = s.viewers[p.ClientID]
		s.viewers[p.ClientID] = l
	}
	s.mu.Unlock()
	if old != nil {
		old.close("replaced by a new join")
	}
	go l.run()
}

// signal hands a message to the participant's current link.
func (s *session) signal(role kvsproto.Role, clientID string, msg kvsproto.ClientMessage) {
	s.mu.Lock()
	l := s.master
	if role != kvsproto.RoleMaster {
		l = s.viewers[clientID]
	}
	s.mu.Unlock()
	if l == nil {
		s.log.Debug("storage session: message for no link", "role", role, "client_id", clientID, "action", msg.Action)
		return
	}
	l.deliver(msg)
}

// gone removes a link that ended.
func (s *session) gone(l *link) {
	s.mu.Lock()
	if l.role == kvsproto.RoleMaster {
		if s.master == l {
			s.master = nil
		}
		if s.feeding == l {
			s.feeding = nil
			s.gate.Restart()
		}
	} else if s.viewers[l.clientID] == l {
		delete(s.viewers, l.clientID)
	}
	if s.talker == l {
		s.talker = nil
	}
	s.mu.Unlock()
}

// end closes every link and the recording.
func (s *session) end(reason string) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	links := make([]*link, 0, len(s.viewers)+2)
	if s.master != nil {
		links = append(links, s.master)
	}
	if s.feeding != nil && s.feeding != s.master {
		links = append(links, s.feeding)
	}
	for _, l := range s.viewers {
		links = append(links, l)
	}
	rec := s.rec
	s.rec = nil
	s.mu.Unlock()
	for _, l := range links {
		l.close("storage session ended: " + reason)
	}
	if rec != nil {
		rec.close()
	}
	s.e.forget(s)
	s.log.Info("storage session ended", "reason", reason)
}

// feedingOther reports whether another camera link feeds the session.
func (s *session) feedingOther(l *link) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.feeding != nil && s.feeding != l
}

// cameraConnected reports whether a camera link is connected.
func (s *session) cameraConnected() bool {
	s.mu.Lock()
	m, f := s.master, s.feeding
	s.mu.Unlock()
	return (m != nil && m.isConnected()) || (f != nil && f.isConnected())
}

// requestKeyframe asks the camera for a keyframe (a viewer joined and the
// cached GOP cannot start it), on its feeding link and on a newer one
// (which takes over at its first keyframe).
func (s *session) requestKeyframe() {
	s.mu.Lock()
	m, f := s.master, s.feeding
	s.mu.Unlock()
	if f != nil {
		f.requestKeyframe()
	}
	if m != nil && m != f {
		m.requestKeyframe()
	}
}

// cameraSink is the media.Sink of a camera link's receivers.
type cameraSink struct{ l *link }

func (c cameraSink) WriteFrame(f media.Frame) error { return c.l.s.fromCamera(c.l, f) }

// fromCamera takes a camera link's frame: only the feeding link's are
// used. The newest link takes over at its first video keyframe, and the
// link it replaces is closed then.
func (s *session) fromCamera(l *link, f media.Frame) error {
	s.mu.Lock()
	if l != s.feeding {
		if l != s.master || f.Codec != rtc.CodecH264 || !f.Keyframe {
			s.mu.Unlock()
			return nil
		}
		old := s.feeding
		s.feeding = l
		s.mu.Unlock()
		if old != nil {
			s.log.Info("storage session: the camera's new link takes over")
			old.close("replaced by a new join")
		}
	} else {
		s.mu.Unlock()
	}
	return s.writeFrame(f)
}

// writeFrame forwards the camera's frame to every viewer and records it.
func (s *session) writeFrame(f media.Frame) error {
	if f.Codec == rtc.CodecOpus {
		s.audioIn.Add(uint64(len(f.Data)))
		s.mu.Lock()
		d := s.gate.Audio(f)
		s.camAudio = true
		rec := s.recorderLocked()
		s.mu.Unlock()
		s.audio.Publish(media.FrameSample(f, d))
		if rec != nil {
			rec.write(f, true)
		}
		return nil
	}
	if f.Codec != rtc.CodecH264 {
		return nil
	}
	s.bytesIn.Add(uint64(len(f.Data)))
	s.framesIn.Add(1)
	s.mu.Lock()
	d, ok := s.gate.Video(f)
	if !ok {
		s.mu.Unlock()
		return nil
	}
	rec, audio := s.recorderLocked(), s.camAudio
	var ask time.Duration // the GOP's length, when the camera is to be asked for a keyframe
	if f.Keyframe {
		s.gopDur, s.askAt = 0, s.e.cfg.MaxFragment
	} else if s.gopDur += d; rec != nil && s.gopDur >= s.askAt {
		ask, s.askAt = s.gopDur, s.gopDur+time.Second
	}
	s.mu.Unlock()
	if ask > 0 {
		s.log.Debug("storage session: asking the camera for a keyframe (the recording's fragment is long)", "gop", ask)
		go s.askKey()
	}
	s.video.Publish(media.FrameSample(f, d))
	if rec != nil {
		rec.write(f, audio)
	}
	return nil
}

// recorderLocked returns the session's recorder, starting it.
func (s *session) recorderLocked() *recorder {
	if s.rec == nil && s.record != nil && !s.ended && !s.e.cfg.DisableRecording {
		s.rec = newRecorder(s, s.record)
	}
	return s.rec
}

// talkFrom forwards a viewer's voice to the camera when the viewer holds
// the floor or can take it (silence packets of 3 bytes or less neither
// take nor keep it).
func (s *session) talkFrom(l *link, f media.Frame) {
	now := time.Now()
	s.mu.Lock()
	voice := len(f.Data) > 3
	if s.talker != nil && s.talker != l && now.Sub(s.talkLast) > s.e.cfg.TalkIdle {
		s.talker = nil
	}
	if s.talker == nil && voice {
		s.talker = l
	}
	if s.talker != l {
		s.mu.Unlock()
		return
	}
	if voice {
		s.talkLast = now
	}
	m := s.master
	s.mu.Unlock()
	if m != nil && m.sendTalk(f) {
		s.talk.Add(1)
	}
}

func (s *session) stats() SessionStats {
	st := SessionStats{
		ChannelARN: s.arn, ChannelName: s.name, StreamARN: s.streamARN,
		BytesIn: s.bytesIn.Load(), FramesIn: s.framesIn.Load(), AudioIn: s.audioIn.Load(), TalkPackets: s.talk.Load(),
	}
	s.mu.Lock()
	st.MasterConnected = (s.master != nil && s.master.isConnected()) || (s.feeding != nil && s.feeding.isConnected())
	st.Viewers = len(s.viewers)
	for _, l := range s.viewers {
		if l.isConnected() {
			st.Connected++
		}
	}
	rec := s.rec
	s.mu.Unlock()
	if rec != nil {
		st.Fragments, st.RecordedBytes, st.RecordErrors = rec.counts()
	}
	return st
}
