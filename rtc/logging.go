package rtc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// LevelTrace is the slog level pion's Trace messages are logged at (below
// slog.LevelDebug, so they only appear when a handler asks for them).
const LevelTrace = slog.LevelDebug - 4

// NewLoggerFactory returns a pion logging.LoggerFactory that writes to l.
// Each pion scope (for example "ice", "dtls", "pc") becomes the "component"
// attribute; pion's Trace/Debug/Info/Warn/Error map to [LevelTrace],
// [LevelTrace], slog.LevelDebug, slog.LevelInfo and slog.LevelError: pion's
// warnings are mostly routine (a socket closed during teardown, a candidate
// that did not resolve), so they are one level quieter than kvsrtc's own. A nil
// logger discards everything. Messages are only formatted when the handler is
// enabled for their level.
func NewLoggerFactory(l *slog.Logger) logging.LoggerFactory {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return loggerFactory{l: l}
}

type loggerFactory struct{ l *slog.Logger }

func (f loggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return &leveledLogger{l: f.l.With("component", scope)}
}

// leveledLogger adapts pion's LeveledLogger to slog.
type leveledLogger struct{ l *slog.Logger }

func (p *leveledLogger) log(level slog.Level, msg string) {
	p.l.Log(context.Background(), level, msg)
}

func (p *leveledLogger) logf(level slog.Level, format string, args ...any) {
	if !p.l.Enabled(context.Background(), level) {
		return
	}
	p.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (p *leveledLogger) Trace(msg string)                  { p.log(LevelTrace, msg) }
func (p *leveledLogger) Tracef(format string, args ...any) { p.logf(LevelTrace, format, args...) }
func (p *leveledLogger) Debug(msg string)                  { p.log(LevelTrace, msg) }
func (p *leveledLogger) Debugf(format string, args ...any) { p.logf(LevelTrace, format, args...) }
func (p *leveledLogger) Info(msg string)                   { p.log(slog.LevelDebug, msg) }
func (p *leveledLogger) Infof(format string, args ...any)  { p.logf(slog.LevelDebug, format, args...) }
func (p *leveledLogger) Warn(msg string)                   { p.log(slog.LevelInfo, msg) }
func (p *leveledLogger) Warnf(format string, args ...any)  { p.logf(slog.LevelInfo, format, args...) }
func (p *leveledLogger) Error(msg string)                  { p.log(slog.LevelError, msg) }
func (p *leveledLogger) Errorf(format string, args ...any) { p.logf(slog.LevelError, format, args...) }
