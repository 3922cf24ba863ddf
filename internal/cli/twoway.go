package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/kvsrtc/kvsrtc/master"
	"github.com/kvsrtc/kvsrtc/media"
	"github.com/kvsrtc/kvsrtc/rtc"
	"github.com/kvsrtc/kvsrtc/viewer"
)

// The two-way flags of kvsrtc view (--talk, --data) and kvsrtc master
// (--talkback-dir, --talkback-cmd, --data).

// openTalk opens the --talk input: "tone" (the embedded 440 Hz tone), "-"
// (Ogg/Opus on stdin) or an Ogg/Opus file (looped).
func openTalk(spec string, stdin io.Reader) (media.Source, error) {
	switch spec {
	case "tone":
		return media.NewTestSource(rtc.CodecOpus, media.SourceConfig{})
	case "-":
		if stdin == nil {
			stdin = os.Stdin
		}
		return media.NewOpusStream(stdin, media.SourceConfig{})
	}
	src, err := media.OpenFile(spec, media.SourceConfig{})
	if err != nil {
		var fe *media.FormatError
		if errors.As(err, &fe) {
			fe.Hint = "--talk needs Ogg/Opus audio; convert with: ffmpeg -i INPUT -vn -c:a libopus -ar 48000 talk.ogg"
		}
		return nil, fmt.Errorf("%w: --talk: %w", ErrUsage, err)
	}
	if err := media.CheckTalkback(src, spec); err != nil {
		_ = src.Close()
		return nil, fmt.Errorf("%w: --talk: %w", ErrUsage, err)
	}
	return src, nil
}

// viewData runs kvsrtc view --data: each line of in is sent as a text
// message; each message received is written to out (the text, one per
// line), or as a JSON event with --json. stop waits for the receiver; the
// stdin reader ends with its input (or at once if it has a read
// deadline).
func viewData(ctx context.Context, sess *viewer.Session, in io.Reader, out io.Writer, jsonOut bool, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex // one message per write
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := sess.Receive(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			if jsonOut {
				ev := map[string]any{"event": "message", "time": m.Time.UTC().Format(time.RFC3339Nano), "label": m.Label}
				if m.Text {
					ev["text"] = string(m.Data)
				} else {
					ev["binary"] = base64.StdEncoding.EncodeToString(m.Data)
				}
				_ = json.NewEncoder(out).Encode(ev)
			} else if m.Text {
				fmt.Fprintln(out, string(m.Data))
			} else {
				fmt.Fprintf(out, "b64:%s\n", base64.StdEncoding.EncodeToString(m.Data))
			}
			mu.Unlock()
		}
	}()
	if in == nil {
		in = os.Stdin
	}
	go func() { // not waited for: a read of a terminal cannot be interrupted
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 64<<10), viewer.MaxMessageSize+1)
		for sc.Scan() {
			if err := sess.SendText(ctx, sc.Text()); err != nil {
				if ctx.Err() == nil && !errors.Is(err, viewer.ErrSessionEnded) {
					log.Error("data channel", "err", err)
				}
				if !errors.Is(err, viewer.ErrMessageTooLarge) {
					return
				}
			}
		}
		switch err := sc.Err(); {
		case errors.Is(err, bufio.ErrTooLong):
			log.Error("a line on stdin is over the data channel's message limit; no more lines are sent (split long messages)", "limit_bytes", viewer.MaxMessageSize)
		case err != nil && ctx.Err() == nil:
			log.Error("reading stdin for the data channel", "err", err)
		}
	}()
	return func() {
		cancel()
		if d, ok := in.(interface{ SetReadDeadline(time.Time) error }); ok {
			_ = d.SetReadDeadline(time.Unix(1, 0))
		}
		wg.Wait()
	}
}

// masterTwoWay fills the master's two-way configuration from the flags.
// With --data stdio it returns a function that reads stdin lines
// ("CLIENT_ID<TAB>text", or just "text" for every viewer with a data
// channel) and sends them, until ctx ends or stdin does.
func (f *masterFlags) twoWay(cfg *master.Config, env *Env, log *slog.Logger) (stdinLoop func(context.Context, *master.Master), err error) {
	if f.talkbackDir != "" {
		if cfg.Talkback, err = master.RecordTalkback(f.talkbackDir); err != nil {
			return nil, fmt.Errorf("%w: --talkback-dir: %w", ErrUsage, err)
		}
		if f.talkbackCmd != "" {
			pipe, err := master.PipeTalkback(f.talkbackCmd, env.Stderr, log)
			if err != nil {
				return nil, fmt.Errorf("%w: --talkback-cmd: %w", ErrUsage, err)
			}
			cfg.Talkback = bothTalkback(cfg.Talkback, pipe, log)
		}
	} else if f.talkbackCmd != "" {
		if cfg.Talkback, err = master.PipeTalkback(f.talkbackCmd, env.Stderr, log); err != nil {
			return nil, fmt.Errorf("%w: --talkback-cmd: %w", ErrUsage, err)
		}
	}
	switch f.data {
	case "":
	case "echo":
		cfg.EchoData = true
	case "stdio":
		var mu sync.Mutex
		cfg.OnMessage = func(m master.Message) {
			text := string(m.Data)
			if !m.Text {
				text = "b64:" + base64.StdEncoding.EncodeToString(m.Data)
			}
			mu.Lock()
			fmt.Fprintf(env.Stdout, "%s\t%s\n", m.ClientID, strings.ReplaceAll(text, "\n", `\n`))
			mu.Unlock()
		}
		return func(ctx context.Context, m *master.Master) { masterStdin(ctx, m, env.Stdin, log) }, nil
	default:
		return nil, fmt.Errorf("%w: --data %q: want echo or stdio", ErrUsage, f.data)
	}
	return nil, nil
}

// masterStdin sends the lines of in to the viewers.
func masterStdin(ctx context.Context, m *master.Master, in io.Reader, log *slog.Logger) {
	if in == nil {
		in = os.Stdin
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), master.MaxMessageSize+64)
	for sc.Scan() && ctx.Err() == nil {
		line := sc.Text()
		to := m.DataViewers()
		if id, text, ok := strings.Cut(line, "\t"); ok {
			to, line = []string{id}, text
		}
		if len(to) == 0 {
			log.Warn("no viewer has a data channel; line dropped")
		}
		for _, id := range to {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := m.SendText(sctx, id, line); err != nil {
				log.Warn("data channel", "viewer", id, "err", err)
			}
			cancel()
		}
	}
}

// bothTalkback records and pipes: the recording always, the pipe when it
// is free.
func bothTalkback(rec, pipe func(string) (master.TalkbackSink, error), log *slog.Logger) func(string) (master.TalkbackSink, error) {
	return func(id string) (master.TalkbackSink, error) {
		r, err := rec(id)
		if err != nil {
			return nil, err
		}
		p, err := pipe(id)
		if err != nil {
			if !errors.Is(err, master.ErrTalkbackBusy) {
				log.Warn("talk-back command", "viewer", id, "err", err)
			}
			return r, nil
		}
		return teeSink{r, p}, nil
	}
}

// teeSink writes to two sinks; a failing second one is dropped.
type teeSink struct{ a, b master.TalkbackSink }

func (t teeSink) WriteRTP(p *rtp.Packet) error {
	_ = t.b.WriteRTP(p)
	return t.a.WriteRTP(p)
}

func (t teeSink) Close() error { return errors.Join(t.a.Close(), t.b.Close()) }

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
