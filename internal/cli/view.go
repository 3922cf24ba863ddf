package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvsrtc/kvsrtc/control"
	"github.com/kvsrtc/kvsrtc/internal/buildinfo"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

func init() {
	register(command{name: "view", summary: "watch a channel: live status, record to .mkv/.webm, or pipe raw video", run: runView})
}

// viewFlags are the flags of kvsrtc view.
type viewFlags struct {
	aws          awsFlags
	logs         logFlags
	ch           channelFlags
	clientID     string
	clientPrefix string
	seed         bool
	answerTO     time.Duration
	mediaTO      time.Duration
	attempts     int
	backoffBase  time.Duration
	backoffCap   time.Duration
	budget       time.Duration
	waitSlot     bool
	audio        bool
	codecs       string
	relay        bool
	record       string
	output       string
	duration     time.Duration
	jsonOut      bool
	loopback     bool
	lateWindow   time.Duration
	talk         string
	data         bool
	storage      bool
}

func runView(ctx context.Context, env *Env, args []string) error {
	var f viewFlags
	fs := newFlagSet(env, "view", "--channel NAME [flags]")
	f.ch.register(fs)
	fs.StringVar(&f.clientID, "client-id", "", "client id of the first attempt (default: generated; later attempts always get fresh ids)")
	fs.StringVar(&f.clientPrefix, "client-id-prefix", "", `prefix of generated client ids (default "kvsrtc-")`)
	fs.BoolVar(&f.seed, "seed-policy", false, "use the blog post's policy: 15 s answer timeout, wait 4 s, one retry")
	fs.DurationVar(&f.answerTO, "answer-timeout", 0, "how long each attempt waits for the SDP answer (default 2.5s)")
	fs.DurationVar(&f.lateWindow, "late-answer-window", 0, "how long after its offer an attempt keeps listening for a late answer while the next attempt runs (default 12s; negative: off)")
	fs.DurationVar(&f.mediaTO, "media-timeout", 0, "how long each attempt waits for the first frame after the answer (default 5s)")
	fs.IntVar(&f.attempts, "max-attempts", 0, "attempts before giving up (default 5)")
	fs.DurationVar(&f.backoffBase, "backoff-base", 0, "wait before the 2nd attempt, doubling after (default 200ms; full jitter)")
	fs.DurationVar(&f.backoffCap, "backoff-cap", 0, "longest wait between attempts (default 5s)")
	fs.DurationVar(&f.budget, "budget", 0, "total time allowed to get video (default 60s)")
	fs.BoolVar(&f.waitSlot, "wait-for-slot", false, "when the channel is full (10 viewers), or with --storage its storage session, keep retrying within the budget instead of failing")
	fs.BoolVar(&f.audio, "audio", false, "also receive audio")
	fs.StringVar(&f.codecs, "codec", "", "video codecs to offer, comma-separated in order of preference (H264,VP8; default both)")
	fs.BoolVar(&f.relay, "relay", false, "use TURN relay candidates only")
	fs.StringVar(&f.record, "record", "", "record to FILE: .mkv (H.264 or VP8, + Opus) or .webm (VP8 + Opus); finalised on Ctrl-C")
	fs.StringVar(&f.output, "output", "", `"-": write the raw video stream to stdout (H.264 Annex-B or VP8 IVF), e.g. | ffplay -`)
	fs.DurationVar(&f.duration, "duration", 0, "stop after streaming this long (default: until Ctrl-C)")
	fs.BoolVar(&f.jsonOut, "json", false, "write one JSON object per event and a final summary (to stdout, or stderr with --output -)")
	fs.BoolVar(&f.loopback, "loopback-only", false, "gather loopback ICE candidates only (local tests and demos)")
	fs.StringVar(&f.talk, "talk", "", `talk back to the camera: send "tone" (a 440 Hz test tone), an Ogg/Opus FILE (looped) or "-" (Ogg/Opus on stdin)`)
	fs.BoolVar(&f.data, "data", false, "open a data channel: each line on stdin is sent, each message received is printed (a JSON event with --json)")
	fs.BoolVar(&f.storage, "storage", false, "Multiviewer: view through the channel's storage session (WebRTC ingestion; the camera runs kvsrtc master --ingest or the SDK's ingestion mode) instead of asking the master: join it and answer its offer; H.264 only, no --data")
	f.aws.register(fs)
	f.logs.registerLevel(fs, "warn")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return f.run(ctx, env)
}

func (f *viewFlags) run(ctx context.Context, env *Env) error {
	channel, err := f.ch.value()
	if err != nil {
		return err
	}
	if f.output != "" && f.output != "-" {
		return fmt.Errorf("%w: --output takes only \"-\" (stdout); use --record FILE for a file", ErrUsage)
	}
	if f.talk == "-" && f.data {
		return fmt.Errorf("%w: --talk - and --data both read stdin; talk from a file or the tone (--talk FILE|tone)", ErrUsage)
	}
	if f.storage && f.data {
		return fmt.Errorf("%w: --storage and --data: the storage session has no data channel", ErrUsage)
	}
	logw := env.Stderr
	log, err := f.logs.logger(logw)
	if err != nil {
		return err
	}
	policy := viewer.RetryPolicy{}
	if f.seed {
		policy = viewer.SeedRetryPolicy()
	}
	if f.answerTO != 0 {
		policy.AnswerTimeout = f.answerTO
	}
	if f.lateWindow != 0 {
		policy.LateAnswerWindow = f.lateWindow
	}
	if f.mediaTO != 0 {
		policy.MediaTimeout = f.mediaTO
	}
	if f.attempts != 0 {
		policy.MaxAttempts = f.attempts
	}
	if f.backoffBase != 0 {
		policy.BackoffBase = f.backoffBase
	}
	if f.backoffCap != 0 {
		policy.BackoffCap = f.backoffCap
	}
	if f.budget != 0 {
		policy.TotalBudget = f.budget
	}
	var codecs []string
	if f.codecs != "" {
		for c := range strings.SplitSeq(f.codecs, ",") {
			if _, err := rtc.ParseCodec(c); err != nil {
				return fmt.Errorf("%w: --codec: %w", ErrUsage, err)
			}
			codecs = append(codecs, strings.TrimSpace(c))
		}
	}

	if f.storage && len(codecs) > 0 && !slices.ContainsFunc(codecs, func(c string) bool { cc, _ := rtc.ParseCodec(c); return cc == rtc.CodecH264 }) {
		return fmt.Errorf("%w: --storage: the storage session sends H.264; --codec %s leaves it out", ErrUsage, f.codecs)
	}

	var sinks []media.Sink
	var rec *lazyRecorder
	if f.record != "" {
		ext := strings.ToLower(filepath.Ext(f.record))
		switch ext {
		case ".mkv":
		case ".webm":
			if f.storage {
				return fmt.Errorf("%w: --record %s with --storage: the storage session sends H.264, which WebM cannot hold; use a .mkv file", ErrUsage, f.record)
			}
			if len(codecs) == 0 {
				codecs = []string{"VP8"}
			}
			for _, c := range codecs {
				if cc, _ := rtc.ParseCodec(c); cc != rtc.CodecVP8 {
					return fmt.Errorf("%w: --record %s: WebM holds VP8 only; use a .mkv file for H.264", ErrUsage, f.record)
				}
			}
		default:
			return fmt.Errorf("%w: --record %s: the file must end in .mkv or .webm", ErrUsage, f.record)
		}
		// Fail now, not after connecting, if the file cannot be written.
		fh, err := os.OpenFile(f.record, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("--record: %w", err)
		}
		_ = fh.Close()
		rec = &lazyRecorder{path: f.record, audio: f.audio, log: log}
		sinks = append(sinks, rec)
	}
	stdout := env.Stdout
	eventOut := env.Stdout
	if f.output == "-" {
		sinks = append(sinks, &lazyRaw{w: stdout})
		eventOut = env.Stderr
	}

	var talk media.Source
	if f.talk != "" {
		if talk, err = openTalk(f.talk, env.Stdin); err != nil {
			return err
		}
	}
	ctl, hc, err := f.aws.control(ctx, env, control.Config{Logger: log})
	if err != nil {
		if talk != nil {
			_ = talk.Close()
		}
		return err
	}
	if f.data {
		eventOut = &lockedWriter{w: eventOut} // events and messages interleave
	}
	status := newStatusLine(env.Stderr, !f.jsonOut && isTerminal(env.Stderr))
	enc := json.NewEncoder(eventOut)
	cfg := viewer.Config{
		Talk: talk, Data: f.data,
		Channel: channel, Control: ctl, ClientID: f.clientID, ClientIDPrefix: f.clientPrefix,
		Retry: policy, WaitForSlot: f.waitSlot, Audio: f.audio, VideoCodecs: codecs,
		ForceRelay: f.relay, LoopbackOnly: f.loopback, Sinks: sinks, Duration: f.duration, Storage: f.storage,
		HTTPClient: hc, Logger: log,
	}
	var sess *viewer.Session
	cfg.OnEvent = func(e viewer.Event) {
		if f.jsonOut {
			_ = enc.Encode(jsonEvent(e))
			return
		}
		status.event(e)
	}
	sess, err = viewer.New(cfg)
	if err != nil {
		if talk != nil {
			_ = talk.Close()
		}
		return err
	}
	stopStatus := status.run(sess)
	stopData := func() {}
	if f.data {
		stopData = viewData(ctx, sess, env.Stdin, eventOut, f.jsonOut, log)
	}
	runErr := sess.Run(ctx)
	stopData()
	stopStatus()
	if rec != nil {
		if err := rec.Close(); err != nil && runErr == nil {
			runErr = fmt.Errorf("finishing the recording: %w", err)
		}
	}
	sum := sess.Summary()
	if f.jsonOut {
		_ = enc.Encode(map[string]any{"event": "summary", "summary": sum, "version": buildinfo.Get()})
	} else {
		status.summary(sum, f.record)
	}
	if runErr != nil {
		var se *viewer.SessionError
		if errors.As(runErr, &se) {
			return errors.New(se.Diagnosis())
		}
		return runErr
	}
	if sum.Frames == 0 {
		return &exitError{code: 1, err: errors.New("no video arrived")}
	}
	return nil
}

// jsonEvent is the --json form of a state change.
func jsonEvent(e viewer.Event) map[string]any {
	m := map[string]any{"event": "state", "time": e.Time.UTC().Format(time.RFC3339Nano), "state": e.State, "attempt": e.Attempt}
	if e.ClientID != "" {
		m["clientId"] = e.ClientID
	}
	if e.Cause != viewer.CauseNone {
		m["cause"] = e.Cause
	}
	if e.Detail != "" {
		m["detail"] = e.Detail
	}
	if e.TimeToFirstFrame > 0 {
		m["timeToFirstFrameMs"] = float64(e.TimeToFirstFrame.Microseconds()) / 1000
	}
	if e.Declined != nil {
		m["declined"] = e.Declined.Error()
	}
	return m
}

// lazyRecorder creates the Matroska writer at the first video frame, when
// the negotiated codec is known.
type lazyRecorder struct {
	path  string
	audio bool
	log   interface{ Warn(string, ...any) }

	mu  sync.Mutex
	w   *media.MatroskaWriter
	err error
}

func (l *lazyRecorder) WriteFrame(f media.Frame) error {
	l.mu.Lock()
	if l.w == nil && l.err == nil && f.Codec != rtc.CodecOpus && f.Keyframe {
		l.w, l.err = media.CreateMatroskaFile(l.path, media.MatroskaConfig{Video: f.Codec, Audio: l.audio})
	}
	w, err := l.w, l.err
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if w == nil {
		return nil
	}
	return w.WriteFrame(f)
}

// Close finalises the file.
func (l *lazyRecorder) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return l.err
	}
	return l.w.Close()
}

// lazyRaw picks the raw format from the first video frame's codec.
type lazyRaw struct {
	w    io.Writer
	sink media.Sink
}

func (l *lazyRaw) WriteFrame(f media.Frame) error {
	if f.Codec == rtc.CodecOpus {
		return nil
	}
	if l.sink == nil {
		s, err := media.NewRawWriter(l.w, f.Codec)
		if err != nil {
			return err
		}
		l.sink = s
	}
	return l.sink.WriteFrame(f)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// statusLine prints the viewer's live status: one rewritten line on a
// terminal, one line per state change otherwise.
type statusLine struct {
	w    io.Writer
	tty  bool
	mu   sync.Mutex
	last viewer.Event
}

func newStatusLine(w io.Writer, tty bool) *statusLine { return &statusLine{w: w, tty: tty} }

func (s *statusLine) event(e viewer.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = e
	if s.tty {
		fmt.Fprint(s.w, "\r\033[K")
	}
	line := fmt.Sprintf("[%s] %s", e.Time.Format("15:04:05.000"), e.State)
	if e.Attempt > 0 {
		line += fmt.Sprintf(" (attempt %d)", e.Attempt)
	}
	if e.Cause != viewer.CauseNone {
		line += " cause=" + string(e.Cause)
	}
	if e.Detail != "" {
		line += ": " + e.Detail
	}
	fmt.Fprintln(s.w, line)
}

// run refreshes the stats part of the line twice a second on a terminal.
func (s *statusLine) run(sess *viewer.Session) (stop func()) {
	if !s.tty {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				st := sess.Stats()
				if st.Frames == 0 {
					continue
				}
				sum := sess.Summary()
				s.mu.Lock()
				fmt.Fprintf(s.w, "\r\033[K%s  attempt %d  first frame %v  %.1f fps  %.0f kbit/s  %dx%d  %d frames",
					sess.State(), sum.Attempts, sum.TimeToFirstFrame.Round(time.Millisecond), st.FPS, st.Bitrate/1000, st.Width, st.Height, st.Frames)
				s.mu.Unlock()
			}
		}
	}()
	return func() { close(done); wg.Wait(); fmt.Fprint(s.w, "") }
}

func (s *statusLine) summary(sum viewer.Summary, record string) {
	if s.tty {
		fmt.Fprint(s.w, "\r\033[K")
	}
	fmt.Fprintf(s.w, "result=%s attempts=%d first-frame=%v frames=%d bytes=%d %s %dx%d\n",
		sum.Result, sum.Attempts, sum.TimeToFirstFrame.Round(time.Millisecond), sum.Frames, sum.Bytes, sum.Codec, sum.Width, sum.Height)
	if record != "" && sum.Frames > 0 {
		fmt.Fprintf(s.w, "recorded to %s (play: ffplay %s)\n", record, record)
	}
}
