// Package nodeprocess stops media nodes that run as processes of this
// machine (the "process" provider of the masters, and the nodes `chorus dev`
// finds launched when it exits). A node is named on its command line
// (--media-id), which is how a recycled process id is told apart from the
// node that once had it.
package nodeprocess

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Provider is the name media node records carry (MediaNodeInfo.Provider)
// when a master's process provider launched them; their environment id is
// then the process id.
const Provider = "process"

// StopGrace is how long Stop waits after SIGTERM (the node drains and
// deregisters) before it sends SIGKILL.
const StopGrace = 10 * time.Second

// Stop sends SIGTERM to process pid if it runs media node nodeID, and
// SIGKILL if it still runs StopGrace later or when ctx ends first. A pid
// that is gone, or now runs something else, is left alone: Stop returns
// nil, as there is nothing of the node to stop.
func Stop(ctx context.Context, pid int, nodeID string) error {
	if pid <= 1 || !Runs(pid, nodeID) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil // exited between the check and the signal
	}
	deadline := time.Now().Add(StopGrace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		return fmt.Errorf("kill media node %s (pid %d): %w", nodeID, pid, err)
	}
	return nil
}

// Runs reports whether process pid is media node nodeID: its command line
// (/proc/<pid>/cmdline) holds the node id as one argument.
func Runs(pid int, nodeID string) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return slices.Contains(strings.Split(string(raw), "\x00"), nodeID)
}
