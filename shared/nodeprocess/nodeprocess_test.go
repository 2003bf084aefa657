package nodeprocess

import (
	"bufio"
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// start runs a shell whose command line names nodeID ($0), as a launched
// media node's names its --media-id; script decides how it treats SIGTERM.
// It returns once the script has set its traps (it prints "ready").
func start(t *testing.T, nodeID, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script, nodeID)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("the script did not start: %q, %v", line, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return cmd
}

func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	for time.Since(begin) < within {
		if !Runs(cmd.Process.Pid, cmd.Args[len(cmd.Args)-1]) {
			return time.Since(begin)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d still runs after %v", cmd.Process.Pid, within)
	return 0
}

func TestStop(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		stopID   string        // the node Stop is asked to stop
		ctxAfter time.Duration // cancel Stop's context after this
		stopped  bool
		minStop  time.Duration // Stop takes at least this long
	}{
		{name: "SIGTERM ends a node", script: "echo ready; sleep 60", stopID: "media_a", ctxAfter: 30 * time.Second, stopped: true},
		{name: "SIGKILL once ctx ends", script: "trap '' TERM; echo ready; while :; do sleep 0.05; done", stopID: "media_a",
			ctxAfter: 500 * time.Millisecond, stopped: true, minStop: 450 * time.Millisecond},
		{name: "a pid running another node is left alone", script: "echo ready; sleep 60", stopID: "media_b", ctxAfter: 30 * time.Second, stopped: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := start(t, "media_a", tc.script)
			if !Runs(cmd.Process.Pid, "media_a") {
				t.Fatal("Runs does not see the node on its command line")
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctxAfter)
			defer cancel()
			begin := time.Now()
			if err := Stop(ctx, cmd.Process.Pid, tc.stopID); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if took := time.Since(begin); took < tc.minStop {
				t.Fatalf("Stop returned after %v, before the process could have needed SIGKILL (%v)", took, tc.minStop)
			}
			if !tc.stopped {
				if err := cmd.Process.Signal(syscall.Signal(0)); err != nil || !Runs(cmd.Process.Pid, "media_a") {
					t.Fatal("Stop signalled a process that runs another node")
				}
				return
			}
			waitExit(t, cmd, 5*time.Second)
		})
	}
}

func TestStopGoneProcess(t *testing.T) {
	if err := Stop(context.Background(), 1, "media_a"); err != nil {
		t.Fatalf("pid 1: %v", err)
	}
	if Runs(1<<30, "media_a") {
		t.Fatal("Runs reports a process id that cannot exist")
	}
}
