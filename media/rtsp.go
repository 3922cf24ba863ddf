package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/rtc"
)

// Errors of [OpenRTSP] sources.
var (
	// ErrFFmpegNotFound: an RTSP source needs ffmpeg and it is not installed
	// (or not in PATH).
	ErrFFmpegNotFound = errors.New("ffmpeg not found")
	// ErrRTSPNoVideo: the RTSP camera gave no video: it did not answer,
	// refused the request, or sent nothing before the connect timeout.
	ErrRTSPNoVideo = errors.New("RTSP camera gave no video")
)

// Defaults of [RTSPConfig].
const (
	DefaultRTSPConnectTimeout = 15 * time.Second
	DefaultRTSPStallTimeout   = 10 * time.Second
	DefaultRTSPMinBackoff     = 500 * time.Millisecond
	DefaultRTSPMaxBackoff     = 30 * time.Second
)

// RTSPConfig configures an RTSP source ([OpenRTSP]). The zero value works:
// RTSP over TCP, ffmpeg from PATH, the default timeouts and backoff.
type RTSPConfig struct {
	// Transport is the RTSP lower transport: "tcp" (the default:
	// interleaved in the RTSP connection, no loss, through NAT) or "udp".
	Transport string

	// FFmpeg is the path of the ffmpeg program; "" looks it up in PATH.
	FFmpeg string

	// ConnectTimeout bounds the wait for the first frame after OpenRTSP:
	// a camera that gives no video by then (no answer, refused, wrong
	// path, bad credentials) fails the source with ErrRTSPNoVideo.
	// Default DefaultRTSPConnectTimeout.
	ConnectTimeout time.Duration

	// StallTimeout is how long a connected camera may send nothing before
	// ffmpeg is restarted. Default DefaultRTSPStallTimeout.
	StallTimeout time.Duration

	// MinBackoff and MaxBackoff bound the wait before ffmpeg is restarted
	// after the camera dropped: it doubles from MinBackoff up to
	// MaxBackoff, and starts again from MinBackoff once video flows.
	// Defaults DefaultRTSPMinBackoff and DefaultRTSPMaxBackoff.
	MinBackoff, MaxBackoff time.Duration

	// Logger receives the restarts (warnings) and ffmpeg's commands
	// (debug); nil discards them.
	Logger *slog.Logger
}

func (c *RTSPConfig) fill() error {
	switch c.Transport {
	case "":
		c.Transport = "tcp"
	case "tcp", "udp":
	default:
		return fmt.Errorf("media: rtsp: transport %q: want tcp or udp", c.Transport)
	}
	for _, d := range []*time.Duration{&c.ConnectTimeout, &c.StallTimeout, &c.MinBackoff, &c.MaxBackoff} {
		if *d < 0 {
			return fmt.Errorf("media: rtsp: negative duration %v", *d)
		}
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultRTSPConnectTimeout
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = DefaultRTSPStallTimeout
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultRTSPMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultRTSPMaxBackoff
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// IsRTSPURL reports whether s is an rtsp:// or rtsps:// URL.
func IsRTSPURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "rtsp://") || strings.HasPrefix(l, "rtsps://")
}

// OpenRTSP returns a live H.264 [Source] from an RTSP camera. It runs
// ffmpeg (`ffmpeg -rtsp_transport tcp -i URL -map 0:v:0 -c:v copy -f flv
// -`: no re-encoding) and supervises it: when the camera drops, stalls or
// ffmpeg exits, ffmpeg is started again after a backoff, and the source
// goes on with the new connection's frames (viewers keep their session;
// a camera that comes back with another resolution is fine, its new SPS
// travels in band). Samples keep the camera's frame timing (FLV carries
// its timestamps through the pipe); the time without video across a
// restart is kept too.
//
// Only the video is sent: camera audio (AAC, G.711) cannot go over WebRTC
// as it is. OpenRTSP checks the URL and that ffmpeg exists (an error
// wrapping ErrFFmpegNotFound says how to install it); ffmpeg starts on the
// first ReadSample, which fails with an error wrapping ErrRTSPNoVideo and
// ffmpeg's own words if the camera gives no video within
// cfg.ConnectTimeout, and with ErrUnsupportedFormat if it sends another
// codec than H.264. Close stops ffmpeg. Credentials in the URL are
// redacted in errors and logs.
func OpenRTSP(rawURL string, cfg RTSPConfig) (Source, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil || !IsRTSPURL(rawURL) || u.Host == "" {
		return nil, fmt.Errorf("media: rtsp: %q is not an RTSP URL; want rtsp://[user:password@]host[:port]/path", redact(rawURL))
	}
	ffmpeg := cfg.FFmpeg
	if ffmpeg == "" {
		ffmpeg = "ffmpeg"
	}
	path, err := exec.LookPath(ffmpeg)
	if err != nil {
		return nil, fmt.Errorf("media: rtsp: %w (%v): an RTSP source runs ffmpeg; install it (Debian/Ubuntu: apt-get install ffmpeg) or put it in PATH", ErrFFmpegNotFound, err)
	}
	return &rtspSource{url: rawURL, name: u.Redacted(), ffmpeg: path, cfg: cfg, log: cfg.Logger,
		frames: make(chan rtspFrame, 8), failed: make(chan struct{})}, nil
}

// redact hides the password of a URL that may not parse.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if i := strings.Index(s, "@"); i >= 0 {
		return "xxxxx" + s[i:]
	}
	return s
}

type rtspFrame struct {
	data []byte
	key  bool
	at   time.Time     // arrival
	dts  int64         // the camera's decode time, ms
	dur  time.Duration // until the next frame
	run  int           // the ffmpeg run it came from
}

// rtspSource implements Source over a supervised ffmpeg.
type rtspSource struct {
	url, name string // name is the redacted URL
	ffmpeg    string
	cfg       RTSPConfig
	log       *slog.Logger

	mu      sync.Mutex
	started bool
	closed  bool
	stop    context.CancelFunc
	done    chan struct{}
	frames  chan rtspFrame
	failed  chan struct{} // closed with err set when the source gives up
	err     error

	held *rtspFrame    // the latest frame, sent once the next one gives its duration (supervisor's)
	pts  time.Duration // ReadSample's
}

func (s *rtspSource) Codec() rtc.Codec { return rtc.CodecH264 }

// begin starts the supervisor on the first call.
func (s *rtspSource) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("media: %s: %w", s.name, ErrClosed)
	}
	if !s.started {
		ctx, cancel := context.WithCancel(context.Background())
		s.started, s.stop, s.done = true, cancel, make(chan struct{})
		go func() {
			defer close(s.done)
			s.supervise(ctx)
		}()
	}
	return nil
}

// ReadSample returns the next access unit from the camera.
func (s *rtspSource) ReadSample(ctx context.Context) (Sample, error) {
	if err := s.begin(); err != nil {
		return Sample{}, err
	}
	if err := ctx.Err(); err != nil {
		return Sample{}, err
	}
	var f rtspFrame
	select {
	case f = <-s.frames:
	case <-s.failed:
		return Sample{}, s.err
	case <-s.done:
		return Sample{}, fmt.Errorf("media: %s: %w", s.name, ErrClosed)
	case <-ctx.Done():
		return Sample{}, ctx.Err()
	}
	var smp Sample
	smp.Data, smp.Keyframe, smp.Timestamp, smp.Duration = f.data, f.key, f.at, f.dur
	smp.PTS = s.pts
	s.pts += f.dur
	return smp, nil
}

// Close stops ffmpeg and waits for it. Safe to call more than once.
func (s *rtspSource) Close() error {
	s.mu.Lock()
	s.closed = true
	started := s.started
	s.mu.Unlock()
	if started {
		s.stop()
		<-s.done
	}
	return nil
}

// args is ffmpeg's command line.
func (s *rtspSource) args() []string {
	return []string{"-hide_banner", "-nostdin", "-loglevel", "error",
		"-rtsp_transport", s.cfg.Transport,
		"-timeout", fmt.Sprint(s.cfg.StallTimeout.Microseconds()), // socket I/O timeout
		"-i", s.url,
		"-map", "0:v:0", "-c:v", "copy",
		"-flush_packets", "1", // each frame as it comes
		// FLV: the simplest container that keeps the camera's timestamps
		// through a pipe; its sequence header carries the SPS/PPS of
		// cameras that announce them only in their SDP.
		"-f", "flv", "-"}
}

// supervise runs ffmpeg until ctx ends or the source fails for good.
func (s *rtspSource) supervise(ctx context.Context) {
	begin := time.Now()
	backoff := s.cfg.MinBackoff
	connected := false
	var lastErr error // the latest reason ffmpeg gave
	for attempt := 1; ; attempt++ {
		wait := s.cfg.StallTimeout
		if !connected {
			wait = max(s.cfg.ConnectTimeout-time.Since(begin), 100*time.Millisecond)
		}
		got, err := s.runOnce(ctx, attempt, wait)
		if ctx.Err() != nil {
			return
		}
		var silence *silenceError
		if errors.As(err, &silence) && !got && lastErr != nil {
			err = lastErr // what ffmpeg said tells more than our timeout
		} else if !errors.As(err, &silence) {
			lastErr = err
		}
		if got {
			connected, backoff = true, s.cfg.MinBackoff
		}
		if errors.Is(err, ErrUnsupportedFormat) || (!connected && time.Since(begin) >= s.cfg.ConnectTimeout) {
			if !errors.Is(err, ErrUnsupportedFormat) {
				err = fmt.Errorf("%w within %v: %w", ErrRTSPNoVideo, s.cfg.ConnectTimeout, err)
			}
			s.err = fmt.Errorf("media: rtsp %s: %w", s.name, err)
			close(s.failed)
			return
		}
		s.log.Warn("media: RTSP camera dropped; restarting ffmpeg", "url", s.name, "in", backoff, "attempt", attempt, "err", err)
		pause := backoff
		if !connected { // the last try before the first frame ends at ConnectTimeout
			pause = max(min(pause, s.cfg.ConnectTimeout-time.Since(begin)), 0)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

// runOnce runs ffmpeg once, forwarding its frames, until it exits, sends
// nothing for wait (then for StallTimeout once frames flow), or ctx ends.
// It reports whether any frame came and why ffmpeg ended.
func (s *rtspSource) runOnce(ctx context.Context, attempt int, wait time.Duration) (bool, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, s.ffmpeg, s.args()...) // killed on return anyway
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	stderr := &tailWriter{max: 2048}
	cmd.Stderr = stderr
	s.log.Debug("media: starting ffmpeg", "url", s.name, "attempt", attempt)
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("starting ffmpeg: %w", err)
	}
	tick := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	go func() { readErr <- s.forward(runCtx, stdout, tick, attempt) }()

	got := false
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var why error
loop:
	for {
		select {
		case <-tick:
			if !got {
				s.log.Info("media: RTSP camera streaming", "url", s.name, "attempt", attempt)
			}
			got = true
			timer.Reset(s.cfg.StallTimeout)
		case <-timer.C:
			silent := wait
			if got {
				silent = s.cfg.StallTimeout
			}
			why = &silenceError{silent.Round(100 * time.Millisecond)}
			break loop
		case err := <-readErr:
			readErr <- err
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	cancel()
	_ = cmd.Process.Kill()
	rerr := <-readErr
	werr := cmd.Wait()
	if why == nil {
		why = ffmpegError(werr, rerr, s.redactLog(stderr.String()))
	}
	return got, why
}

// forward reads access units from ffmpeg's output and hands them to
// ReadSample, signalling tick for each. A frame is handed on when the
// next one comes: the difference of their camera timestamps is its
// duration (their arrival times' across a restart of ffmpeg or a jump of
// the camera's clock).
func (s *rtspSource) forward(ctx context.Context, r io.Reader, tick chan<- struct{}, run int) error {
	fr := newFLVVideoReader(r)
	for {
		f, err := fr.next()
		if err != nil {
			_, _ = io.Copy(io.Discard, r) // let ffmpeg finish writing its error
			return err
		}
		select {
		case tick <- struct{}{}:
		default:
		}
		now := time.Now()
		if h := s.held; h != nil {
			d := time.Duration(f.dts-h.dts) * time.Millisecond
			if h.run != run || d <= 0 || d > maxLag*5 {
				d = now.Sub(h.at)
			}
			h.dur = max(d, time.Millisecond)
			select {
			case s.frames <- *h:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		s.held = &rtspFrame{data: f.data, key: f.key, at: now, dts: f.dts, run: run}
	}
}

// silenceError: the camera sent nothing for a while; ffmpeg was stopped.
type silenceError struct{ d time.Duration }

func (e *silenceError) Error() string { return fmt.Sprintf("no video for %v", e.d) }

// redactLog replaces the URL and its password in ffmpeg's words.
func (s *rtspSource) redactLog(text string) string {
	text = strings.ReplaceAll(text, s.url, s.name)
	if u, err := url.Parse(s.url); err == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			text = strings.ReplaceAll(text, p, "xxxxx")
		}
	}
	return text
}

// ffmpegError explains why ffmpeg stopped, from its exit, the stream and
// the last line it printed.
func ffmpegError(wait, read error, stderr string) error {
	line := lastLine(stderr)
	low := strings.ToLower(stderr)
	switch {
	case errors.Is(read, ErrUnsupportedFormat) || strings.Contains(low, "not compatible with flv") ||
		strings.Contains(low, "unsupported codec"):
		return fmt.Errorf("%w: the camera's video is not H.264 (ffmpeg: %s); set the camera's encoder to H.264, or transcode: ffmpeg -i URL -an -c:v libx264 -profile:v baseline -tune zerolatency -f h264 - | kvsrtc master --source -", ErrUnsupportedFormat, line)
	case read != nil && !errors.Is(read, io.EOF) && !errors.Is(read, context.Canceled):
		if line != "" {
			return fmt.Errorf("reading ffmpeg's output: %w (ffmpeg: %s)", read, line)
		}
		return fmt.Errorf("reading ffmpeg's output: %w", read)
	case line != "":
		return fmt.Errorf("ffmpeg: %s", line)
	case wait != nil:
		return fmt.Errorf("ffmpeg: %w", wait)
	}
	return errors.New("ffmpeg ended (the camera closed the stream)")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > w.max {
		w.b = append(w.b[:0], w.b[len(w.b)-w.max:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
