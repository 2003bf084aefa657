package render

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// FFmpegError is a failed FFmpeg run. Err is the process's error
// (*exec.ExitError) or, when the context ended the run, the context's
// error, so errors.Is(err, context.Canceled) holds.
type FFmpegError struct {
	// Step names what the run was for ("composed", "individual str_X", ...).
	Step string
	Args []string
	// Stderr is the end of FFmpeg's error output (Config.StderrTail bytes).
	Stderr string
	Err    error
}

func (e *FFmpegError) Error() string {
	return fmt.Sprintf("render: ffmpeg (%s): %v: %s", e.Step, e.Err, strings.TrimSpace(e.Stderr))
}

func (e *FFmpegError) Unwrap() error { return e.Err }

// runner runs FFmpeg and adds up the CPU time of its runs.
type runner struct {
	ffmpeg string
	tail   int

	mu  sync.Mutex
	cpu time.Duration
}

// run runs ffmpeg with args (after the common flags); step names the run in
// errors. The context kills FFmpeg.
func (r *runner) run(ctx context.Context, step string, args ...string) error {
	full := append([]string{"-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"}, args...)
	cmd := exec.CommandContext(ctx, r.ffmpeg, full...)
	stderr := &tailBuffer{max: r.tail}
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if cmd.ProcessState != nil {
		r.mu.Lock()
		r.cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		r.mu.Unlock()
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = errors.Join(ctxErr, err)
		}
		return &FFmpegError{Step: step, Args: full, Stderr: stderr.String(), Err: err}
	}
	return nil
}

func (r *runner) cpuTime() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cpu
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
