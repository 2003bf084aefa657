package sfu

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// SlogFactory routes pion's logs to slog: pion's errors and warnings become
// warnings (they are about one peer, not the node), the rest debug.
type SlogFactory struct{ Logger *slog.Logger }

// NewLogger implements logging.LoggerFactory.
func (f SlogFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.Logger.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) Trace(msg string)                          {}
func (l pionLogger) Tracef(format string, args ...interface{}) {}
func (l pionLogger) Debug(msg string)                          { l.log.Debug(msg) }
func (l pionLogger) Debugf(format string, args ...interface{}) { l.debugf(format, args...) }
func (l pionLogger) Info(msg string)                           { l.log.Debug(msg) }
func (l pionLogger) Infof(format string, args ...interface{})  { l.debugf(format, args...) }

// debugf formats only when debug logs are on: pion's congestion controller
// logs at info on every transport-cc feedback of every subscriber.
func (l pionLogger) debugf(format string, args ...interface{}) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Warn(msg string) { l.log.Warn(msg) }
func (l pionLogger) Warnf(format string, args ...interface{}) {
	l.log.Warn(fmt.Sprintf(format, args...))
}
func (l pionLogger) Error(msg string) { l.log.Warn(msg) }
func (l pionLogger) Errorf(format string, args ...interface{}) {
	l.log.Warn(fmt.Sprintf(format, args...))
}
