//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestRecordingCPU measures the recorder's CPU for COMPOSED recordings of
// 2 and 4 Chromium pages at 640x480 and 1280x720 (BENCHMARKS.md
// "Recording"), and checks each output: H.264 at the requested size, every
// BEST_FIT tile showing video. A benchmark: it runs only with
// CHORUS_RECORDING_CPU=1 (four pages and FFmpeg take this 2-core machine
// for minutes).
func TestRecordingCPU(t *testing.T) {
	if os.Getenv("CHORUS_RECORDING_CPU") == "" {
		t.Skip("a benchmark: CHORUS_RECORDING_CPU=1 runs it")
	}
	dc := startDev(t, devOptions{Args: []string{"--masters", "1", "--media-nodes", "1", "--recorders", "1"}})
	p := startPages(t, dc)
	recorderPID := dc.pid(t, "recorder_1")
	const length = 10 * time.Second
	for _, tt := range []struct {
		participants  int
		width, height int
	}{{2, 640, 480}, {2, 1280, 720}, {4, 640, 480}, {4, 1280, 720}} {
		name := fmt.Sprintf("%d participants %dx%d", tt.participants, tt.width, tt.height)
		t.Run(name, func(t *testing.T) {
			sid := "reccpu_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
			p.join(sid, tt.participants)
			p.waitVideo(tt.participants-1, 30*time.Second)
			time.Sleep(2 * time.Second) // the pages settle (their encoders ramp up)
			before := processCPU(t, recorderPID)
			id := p.startRecording(sid, fmt.Sprintf(`{"name":"cpu","outputMode":"COMPOSED","resolution":"%dx%d","frameRate":25}`, tt.width, tt.height))
			started := time.Now()
			time.Sleep(length)
			capture := processCPU(t, recorderPID) - before
			p.stopRecording(id)
			wall := time.Since(started)
			stopped := time.Now()
			ready := p.waitRecording(id, "ready", 120*time.Second)
			renderTook := time.Since(stopped)
			all := processCPU(t, recorderPID) - before
			t.Logf("%s, %s: capture %s CPU (%.1f%% of a core), render %s CPU in %s (FFmpeg included), %d bytes",
				name, wall.Round(100*time.Millisecond), capture.Round(10*time.Millisecond), 100*capture.Seconds()/wall.Seconds(),
				(all - capture).Round(10*time.Millisecond), renderTook.Round(100*time.Millisecond), ready.Size)

			file := filepath.Join(dc.RecordingPath, id, "cpu.mp4")
			info := ffprobe(t, file)
			for _, s := range info.Streams {
				if s.CodecType == "video" && (s.CodecName != "h264" || s.Width != tt.width || s.Height != tt.height) {
					t.Errorf("video %s %dx%d, want h264 %dx%d", s.CodecName, s.Width, s.Height, tt.width, tt.height)
				}
			}
			// BEST_FIT: two side by side, four in a 2x2 grid; the middle of
			// each tile shows its video (the tiles are letterboxed).
			cols, rows := 2, 1
			if tt.participants == 4 {
				rows = 2
			}
			w, h := tt.width/cols, tt.height/rows
			var rects [][4]int
			for i := 0; i < tt.participants; i++ {
				x0, y0 := (i%cols)*w, (i/cols)*h
				rects = append(rects, [4]int{x0 + w/3, y0 + h/3, x0 + 2*w/3, y0 + 2*h/3})
			}
			for _, at := range []time.Duration{2 * time.Second, wall - 2*time.Second} {
				for i, share := range litShare(t, file, at, tt.width, tt.height, rects...) {
					if share < 0.5 {
						t.Errorf("tile %d at %s: lit share %.2f, want video (%s)", i, at, share, file)
					}
				}
			}
			if t.Failed() {
				return // the file stays for a look, until chorus dev exits
			}
			if r := p.rec("delete", id); !r.Deleted {
				t.Errorf("deleteRecording: %+v", r)
			}
			p.reset()
		})
	}
}
