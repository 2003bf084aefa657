//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRecordingFullDisk: the recording path on a 1 MiB tmpfs fills while
// two pages are recorded. The recording fails with the cause in the
// recordingStatusChanged event's and the object's terms (failed), the
// session and its media go on, its partial files are removed (the space
// comes back), and the next recording, short enough to fit, is ready.
// Issue 14: "a full disk (a small tmpfs): clear errors, nothing else
// harmed".
func TestRecordingFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mounting a tmpfs needs root (CI runs as root)")
	}
	path := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "chorus-e2e-full", path).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", path).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", path, err, out)
		}
	})
	dc := startDev(t, devOptions{Args: []string{"--masters", "1", "--media-nodes", "1", "--recorders", "1", "--recording-path", path}})
	p := startPages(t, dc)
	sid := "recfull_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	p.join(sid, 2)
	p.waitVideo(1, 30*time.Second)

	id := p.startRecording(sid, `{"name":"big","outputMode":"COMPOSED","resolution":"640x480"}`)
	start := time.Now()
	var last *recording
	for deadline := time.Now().Add(90 * time.Second); ; {
		r := p.rec("get", id)
		last = r.Recording
		if last != nil && last.Status == "failed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recording %s not failed 90 s into a 1 MiB recording path: %+v (%s)", id, last, usage(t, path))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("recording failed %s after its start on the full disk", time.Since(start).Round(100*time.Millisecond))
	logs := dc.logs.String()
	if !strings.Contains(logs, "no space left on device") {
		t.Errorf("no recorder log says why the recording failed (no space left on device)")
	}
	// The session and its media go on.
	p.waitVideo(1, 10*time.Second)
	for _, pg := range p.stats() {
		if strings.Contains(eventTypes(pg), "sessionDisconnected") {
			t.Errorf("page %s left the session: %s", pg.ConnectionID, eventTypes(pg))
		}
	}
	// The partial files go: the space comes back.
	waitFor(t, "the failed recording's files removed", 20*time.Second, func() bool {
		_, err1 := os.Stat(filepath.Join(path, id))
		_, err2 := os.Stat(filepath.Join(path, ".work", id))
		return os.IsNotExist(err1) && os.IsNotExist(err2)
	})
	t.Logf("recording path after the failure: %s", usage(t, path))

	// A short one fits.
	small := p.startRecording(sid, `{"name":"small","outputMode":"COMPOSED","resolution":"320x240"}`)
	time.Sleep(time.Second)
	p.stopRecording(small)
	ready := p.waitRecording(small, "ready", 60*time.Second)
	if info := ffprobe(t, filepath.Join(path, small, "small.mp4")); info.codec("video") != "h264" {
		t.Errorf("the recording after the failure: %+v", info)
	}
	t.Logf("the next recording is ready: %d bytes", ready.Size)
	for _, rid := range []string{id, small} {
		if r := p.rec("delete", rid); !r.Deleted {
			t.Errorf("deleteRecording %s: %+v", rid, r)
		}
	}
	p.reset()
	assertNoSessionKeys(t, dc)
	assertNoMasterConnections(t, dc)
}

// usage is df's line for a path.
func usage(t *testing.T, path string) string {
	t.Helper()
	out, _ := exec.Command("df", "-k", path).Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
