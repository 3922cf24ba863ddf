package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

// Talk-back audio is Opus at 48 kHz; WebRTC signals it as 2 channels.
const (
	talkbackRate     = 48000
	talkbackChannels = 2
)

// RecordTalkback returns a Config.Talkback that records each viewer's
// audio to its own Ogg/Opus file in dir (created if needed):
// talkback-<client id>-<UTC time>.ogg. A file is finalised (its last page
// marked end-of-stream) when the viewer stops sending, leaves, or the
// master stops.
func RecordTalkback(dir string) (func(clientID string) (TalkbackSink, error), error) {
	if strings.TrimSpace(dir) == "" {
		return nil, fmt.Errorf("%w: Talkback: set a directory to record talk-back audio in", ErrInvalidConfig)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: Talkback: %w", ErrInvalidConfig, err)
	}
	return func(clientID string) (TalkbackSink, error) {
		name := fmt.Sprintf("talkback-%s-%s.ogg", safeName(clientID), time.Now().UTC().Format("20060102T150405.000Z"))
		w, err := oggwriter.New(filepath.Join(dir, name), talkbackRate, talkbackChannels)
		if err != nil {
			return nil, fmt.Errorf("recording talk-back: %w", err)
		}
		return w, nil
	}, nil
}

// safeName keeps a client id usable as part of a file name.
func safeName(id string) string {
	var b strings.Builder
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "viewer"
	}
	return b.String()
}

// PipeTalkback returns a Config.Talkback that pipes a viewer's audio, as
// an Ogg/Opus stream, into a new process running command with "sh -c"
// (for example "ffplay -nodisp -autoexit -"), with KVSRTC_CLIENT_ID in its
// environment; the process's output goes to stderr. One process at a
// time: while one viewer's audio is piped, another viewer's is dropped
// (ErrTalkbackBusy). When the viewer stops, the process's input is closed
// and it gets 2 s to exit before it is killed.
func PipeTalkback(command string, stderr io.Writer, log *slog.Logger) (func(clientID string) (TalkbackSink, error), error) {
	if strings.TrimSpace(command) == "" {
		return nil, fmt.Errorf("%w: Talkback: set a command to pipe talk-back audio to", ErrInvalidConfig)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if stderr == nil {
		stderr = io.Discard
	}
	var mu sync.Mutex
	busy := ""
	return func(clientID string) (TalkbackSink, error) {
		mu.Lock()
		defer mu.Unlock()
		if busy != "" {
			return nil, fmt.Errorf("%w (viewer %s holds the pipe)", ErrTalkbackBusy, busy)
		}
		// The context is the process's lifetime: Close cancels it (a kill)
		// if the process does not exit on its own.
		pctx, kill := context.WithCancel(context.Background())
		cmd := exec.CommandContext(pctx, "sh", "-c", command)
		cmd.Env = append(os.Environ(), "KVSRTC_CLIENT_ID="+clientID)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		cmd.WaitDelay = 2 * time.Second
		in, err := cmd.StdinPipe()
		if err != nil {
			kill()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			kill()
			return nil, fmt.Errorf("starting the talk-back command %q: %w", command, err)
		}
		w, err := oggwriter.NewWith(in, talkbackRate, talkbackChannels)
		if err != nil {
			_ = in.Close()
			kill()
			_ = cmd.Wait()
			return nil, err
		}
		busy = clientID
		log.Info("piping the viewer's talk-back", "viewer", clientID, "command", command, "pid", cmd.Process.Pid)
		return &pipeSink{w: w, cmd: cmd, kill: kill, done: func() {
			mu.Lock()
			busy = ""
			mu.Unlock()
		}}, nil
	}, nil
}

// pipeSink is one talk-back process.
type pipeSink struct {
	w    *oggwriter.OggWriter
	cmd  *exec.Cmd
	kill context.CancelFunc
	done func()
	once sync.Once
	err  error
}

func (p *pipeSink) WriteRTP(pkt *rtp.Packet) error { return p.w.WriteRTP(pkt) }

func (p *pipeSink) Close() error {
	p.once.Do(func() {
		defer p.done()
		closeErr := p.w.Close() // closes the process's stdin
		exited := make(chan error, 1)
		go func() { exited <- p.cmd.Wait() }()
		var waitErr error
		select {
		case waitErr = <-exited:
		case <-time.After(2 * time.Second):
			p.kill()
			waitErr = <-exited
		}
		p.kill()
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) {
			waitErr = nil // the player's own business (killed, or it quit)
		}
		if errors.Is(closeErr, os.ErrClosed) {
			closeErr = nil
		}
		p.err = errors.Join(closeErr, waitErr)
	})
	return p.err
}
