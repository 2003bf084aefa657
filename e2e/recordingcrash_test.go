//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// The crash tests record two Chromium pages COMPOSED at 640x480 (BEST_FIT:
// two 320x480 tiles side by side, each 640x480 video cropped to its tile),
// kill a process of the cluster while the recording runs, and check the
// file: it plays for the whole recording, and any black or frozen picture
// lies around the kill, within a bound that depends on what was killed
// (BENCHMARKS.md has the measured gaps).

// recordingTiles are the inner parts of the two tiles, [x0,y0,x1,y1).
var recordingTiles = [][4]int{{40, 100, 280, 380}, {360, 100, 600, 380}}

// recordingCrash is one crash test.
type recordingCrash struct {
	// victim names what is killed, in the logs.
	victim string
	// args are chorus dev's.
	args []string
	// kill SIGKILLs the victim while the recording runs and returns its node
	// id.
	kill func(t *testing.T, r *crashRun) string
	// recover waits until the cluster got over the kill (logging how long
	// it took): media back, or the job taken over.
	recover func(t *testing.T, r *crashRun, killed string)
	// maxGap bounds each tile's black or frozen picture around the kill.
	maxGap time.Duration
	// wantGap: the crash must leave a gap in both tiles (the recorder's
	// own: it captured nothing for a while).
	wantGap bool
	// newSegments: the recorder must go on in new segments after the kill
	// (a new recorder, or new peer connections); without, it must not.
	newSegments bool
	// failedReads is how many of the status reads during the recording
	// may fail: the one in flight on a master that dies.
	failedReads int
}

// crashRun is a crash test's cluster and recording.
type crashRun struct {
	dc        *devCluster
	p         *pages
	rdb       redis.UniversalClient
	sid, id   string
	startedAt time.Time // the start call returned
	killedAt  time.Time
}

// runRecordingCrash records two pages COMPOSED, kills c's victim 4 s in,
// waits for the cluster to get over it, records 6 s more and stops. The
// recording stays started from the start to the stop (read through the
// proxy every 250 ms), becomes ready, and its file lasts the recording with
// both tiles showing video before the kill and at the end; each tile's
// black or frozen picture lies around the kill and lasts at most c.maxGap.
func runRecordingCrash(t *testing.T, c recordingCrash) {
	dc := startDev(t, devOptions{Args: c.args})
	p := startPages(t, dc)
	rdb := dc.redisClient(t)
	sid := "reccrash_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	p.join(sid, 2)
	p.waitVideo(1, 30*time.Second)
	id := p.startRecording(sid, `{"name":"crash","outputMode":"COMPOSED","resolution":"640x480"}`)
	run := &crashRun{dc: dc, p: p, rdb: rdb, sid: sid, startedAt: time.Now(), id: id}
	watch := watchRecordingStatus(dc, run.id)
	t.Cleanup(func() { watch.stop() })
	time.Sleep(4 * time.Second)
	killed := c.kill(t, run)
	c.recover(t, run, killed)
	time.Sleep(6 * time.Second)
	// What the recorder captured after the kill (read before the stop,
	// which renders and removes its working directory).
	after := run.newVideo(t)
	var secs []string
	for _, stream := range slices.Sorted(maps.Keys(after)) {
		secs = append(secs, fmt.Sprintf("from %+.2f s", after[stream]))
	}
	if len(secs) == 0 {
		secs = []string{"none"}
	}
	t.Logf("the recorder's video in new segments after the kill: %s", strings.Join(secs, ", "))
	if c.newSegments && len(after) != 2 {
		t.Errorf("the recorder captured the video of %d streams in new segments after the kill, want 2", len(after))
	}
	if !c.newSegments && len(after) != 0 {
		t.Errorf("the recorder opened new segments after the kill: %v", after)
	}
	reads := watch.stop()
	stopCall := time.Now()
	p.stopRecording(run.id)
	reads.check(t, run.killedAt, c.failedReads)
	ready := p.waitRecording(run.id, "ready", 60*time.Second)
	wall := stopCall.Sub(run.startedAt)
	if d := time.Duration(ready.Duration * float64(time.Second)); d < wall-time.Second || d > wall+time.Second {
		t.Errorf("Recording.duration %s, the recording's wall time was %s", d, wall)
	}
	crashAt := run.killedAt.Sub(run.startedAt)
	tiles := checkCrashRecording(t, filepath.Join(dc.RecordingPath, run.id, "crash.mp4"), wall, crashAt)
	worst := 0.0
	for i, gap := range tiles {
		worst = max(worst, gap)
		if c.wantGap && gap == 0 {
			t.Errorf("tile %d: no gap around the kill at %.2f s: a recorder that died cannot have captured it", i, crashAt.Seconds())
		}
		if gap > c.maxGap.Seconds() {
			t.Errorf("tile %d: %.2f s of black or frozen picture after the SIGKILL of %s, want at most %s", i, gap, killed, c.maxGap)
		}
	}
	t.Logf("recording gap after the SIGKILL of %s (%s): %.2f s of black or frozen picture (tiles %.2f and %.2f s; kill at %.2f s of %.2f s)",
		c.victim, killed, worst, tiles[0], tiles[1], crashAt.Seconds(), wall.Seconds())
	checkRecordingGaps(t, dc, run.id, c.newSegments, crashAt, c.maxGap)
	if r := p.rec("delete", run.id); !r.Deleted {
		t.Errorf("deleteRecording: %+v", r)
	}
	p.reset()
	assertNoSessionKeys(t, dc)
	assertNoMasterConnections(t, dc)
}

// TestRecordingRecorderCrash SIGKILLs the recorder capturing the recording
// (chorus dev with two recorders): the other recorder takes the job over
// when the lease expires, joins with a fresh recorder connection, goes on
// in new segments, and renders the recording when it is stopped; both
// tiles are black during the gap (lease TTL, join, subscriptions, first key
// frames).
func TestRecordingRecorderCrash(t *testing.T) {
	var leaseKey string
	runRecordingCrash(t, recordingCrash{
		victim: "the recorder",
		args:   []string{"--masters", "1", "--media-nodes", "1", "--recorders", "2"},
		kill: func(t *testing.T, r *crashRun) string {
			leaseKey = "chorus:e2e:{" + r.sid + "}:rec:" + r.id + ":lease"
			holder, err := r.rdb.Get(context.Background(), leaseKey).Result()
			if err != nil {
				t.Fatalf("lease %s: %v", leaseKey, err)
			}
			r.sigkill(t, holder)
			return holder
		},
		recover: func(t *testing.T, r *crashRun, killed string) {
			waitQuick(t, "another recorder takes the recording over", 20*time.Second, func() bool {
				h, err := r.rdb.Get(context.Background(), leaseKey).Result()
				if err != nil || h == killed {
					return false
				}
				t.Logf("%s took the recording over %s after %s's SIGKILL", h, time.Since(r.killedAt).Round(50*time.Millisecond), killed)
				return true
			})
		},
		// BENCHMARKS.md: 5.3-6.4 s by tile (the lease TTL is 5 s), x1.25.
		maxGap:      8 * time.Second,
		wantGap:     true,
		newSegments: true,
	})
}

// TestRecordingMediaNodeCrash SIGKILLs the media node hosting the recorded
// session (chorus dev with two): the session migrates to the other node,
// the pages re-publish there and the recorder, a Go SDK participant,
// subscribes again (new peer connections, new segments of the same take).
// Each tile is black or frozen from the crash until its publisher's media is
// back: the browsers' recovery bound of TestMediaNodeCrashMigration.
func TestRecordingMediaNodeCrash(t *testing.T) {
	runRecordingCrash(t, recordingCrash{
		victim: "the session's media node",
		args:   []string{"--masters", "1", "--media-nodes", "2", "--recorders", "1"},
		kill: func(t *testing.T, r *crashRun) string {
			node := sessionNode(t, r.dc, r.sid)
			r.sigkill(t, node)
			return node
		},
		recover: func(t *testing.T, r *crashRun, killed string) {
			gaps := waitVideosBack(t, r.p, r.killedAt, 2, 60*time.Second)
			var ms []int64
			for _, vs := range gaps {
				for _, v := range vs {
					ms = append(ms, v.MaxGapMS)
				}
			}
			t.Logf("the pages' videos back after %v ms", ms)
			if node := sessionNode(t, r.dc, r.sid); node == killed || node == "" {
				t.Errorf("the session is on %q after %s's crash", node, killed)
			}
			// The pages' own view is not enough: a loaded machine's
			// Chromium may decode frames received before the kill seconds
			// later. The recorder's video is back once it writes new
			// segments of both streams.
			waitQuick(t, "the recorder captures both streams again", 30*time.Second, func() bool {
				return len(r.newVideo(t)) == 2
			})
		},
		maxGap:      maxBrowserRecoveryMS * time.Millisecond,
		newSegments: true,
	})
}

// TestRecordingMasterCrash SIGKILLs the master holding the recorder's
// WebSocket (chorus dev with two masters), so the recorder's participant
// must resume its session on the other master as any client; the victim
// may also hold the pages' sockets or the media node controller's lease
// (logged). Masters are not in the media path: the recording has no gap
// (nothing black or frozen over the detection's 0.5 s; 1 s allowed).
func TestRecordingMasterCrash(t *testing.T) {
	var recorderConn string
	runRecordingCrash(t, recordingCrash{
		victim: "the recorder's master",
		args:   []string{"--masters", "2", "--media-nodes", "1", "--recorders", "1"},
		kill: func(t *testing.T, r *crashRun) string {
			ctx := context.Background()
			var rec struct {
				RecorderConnection string `json:"recorderConnection"`
			}
			raw, err := r.rdb.Get(ctx, "chorus:e2e:{"+r.sid+"}:rec:"+r.id).Result()
			if err != nil || json.Unmarshal([]byte(raw), &rec) != nil || rec.RecorderConnection == "" {
				t.Fatalf("recording %s in Redis: %v %s", r.id, err, raw)
			}
			recorderConn = rec.RecorderConnection
			sessionOf := map[string]string{recorderConn: r.sid}
			for _, pg := range r.p.stats() {
				sessionOf[pg.ConnectionID] = r.sid
			}
			holders := connectionMasters(t, ctx, r.rdb, sessionOf)
			incarnation := holders[recorderConn]
			node, _, _ := strings.Cut(incarnation, ".")
			if node == "" {
				t.Fatalf("the recorder's connection %s has no master", recorderConn)
			}
			controller := r.rdb.Get(ctx, "chorus:e2e:{cluster}:controller").Val()
			t.Logf("SIGKILL %s: holds the recorder's socket, %d of the pages' sockets, controller lease %v (holder %q)",
				incarnation, countHeldBy(holders, incarnation)-1, strings.HasPrefix(controller, node+"."), controller)
			r.sigkill(t, node)
			return node
		},
		recover: func(t *testing.T, r *crashRun, killed string) {
			waitQuick(t, "the recorder resumes on the other master", 10*time.Second, func() bool {
				m := connectionMasters(t, context.Background(), r.rdb, map[string]string{recorderConn: r.sid})[recorderConn]
				if m == "" || strings.HasPrefix(m, killed+".") {
					return false
				}
				t.Logf("the recorder's connection is held by %s %s after the SIGKILL", m, time.Since(r.killedAt).Round(10*time.Millisecond))
				return true
			})
		},
		maxGap:      time.Second,
		failedReads: 1,
	})
}

// segmentManifest is what the crash tests read of a segment's manifest
// (segment.json, recorder/README.md "On disk"; e2e imports no role).
type segmentManifest struct {
	Stream struct {
		StreamID string `json:"streamId"`
	} `json:"stream"`
	OpenedAt int64 `json:"openedAt"` // Unix ms
	Video    *struct {
		StartedAt int64 `json:"startedAt"` // the first frame written, Unix ms
	} `json:"video"`
}

// recorderSegments reads the manifests of the segments a recording's
// recorders are writing (their working directory, <recording path>/.work/<id>),
// by stream id, oldest first.
func recorderSegments(t *testing.T, dc *devCluster, id string) map[string][]segmentManifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dc.RecordingPath, ".work", id, "streams", "*", "*", "*", "segment.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]segmentManifest{}
	for _, f := range files {
		var m segmentManifest
		raw, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(raw, &m) != nil {
			continue // replaced right now (written atomically, by rename)
		}
		out[m.Stream.StreamID] = append(out[m.Stream.StreamID], m)
	}
	for _, segs := range out {
		sort.Slice(segs, func(i, j int) bool { return segs[i].OpenedAt < segs[j].OpenedAt })
	}
	return out
}

// newVideo returns, for each stream the recorder wrote video of in a
// segment opened since the kill, when the first such frame was captured
// (seconds after the kill).
func (r *crashRun) newVideo(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	kill := r.killedAt.UnixMilli()
	for stream, segs := range recorderSegments(t, r.dc, r.id) {
		for _, m := range segs {
			if m.OpenedAt >= kill && m.Video != nil {
				out[stream] = float64(m.Video.StartedAt-kill) / 1000
				break
			}
		}
	}
	return out
}

// waitQuick is waitFor polling every 50 ms, for the timings it logs.
func waitQuick(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sigkill kills a node of the cluster and notes when.
func (r *crashRun) sigkill(t *testing.T, node string) {
	t.Helper()
	if err := syscall.Kill(r.dc.pid(t, node), syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", node, err)
	}
	r.killedAt = time.Now()
}

// sessionNode is the media node hosting a session, as the REST API says.
func sessionNode(t *testing.T, dc *devCluster, sid string) string {
	t.Helper()
	var s protocol.Session
	if err := json.Unmarshal(restCall(t, dc, "GET", "/openvidu/api/sessions/"+sid, ""), &s); err != nil {
		t.Fatal(err)
	}
	return s.MediaNodeID
}

// statusReads are a recording's statuses read during a crash test.
type statusReads struct {
	at       []time.Time
	statuses []string // the status, or the read's error
	failed   []bool
}

// check fails the test unless every read said started and at most allowed
// failed; reads must go on from just before the kill to a second after it.
func (s statusReads) check(t *testing.T, kill time.Time, allowed int) {
	t.Helper()
	failed, before, after := 0, false, false
	for i, st := range s.statuses {
		switch {
		case s.failed[i]:
			failed++
			t.Logf("status read at %+.2f s from the kill failed: %s", s.at[i].Sub(kill).Seconds(), st)
		case st != "started":
			t.Errorf("the recording is %s at %+.2f s from the kill, want started throughout", st, s.at[i].Sub(kill).Seconds())
		default:
			before = before || s.at[i].Before(kill) && s.at[i].After(kill.Add(-time.Second))
			after = after || s.at[i].After(kill) && s.at[i].Before(kill.Add(time.Second))
		}
	}
	t.Logf("%d status reads during the recording, %d failed", len(s.statuses), failed)
	if failed > allowed {
		t.Errorf("%d of %d status reads failed, want at most %d", failed, len(s.statuses), allowed)
	}
	if !before || !after {
		t.Errorf("no status read within a second before (%v) or after (%v) the kill", before, after)
	}
}

// statusWatch reads a recording through the proxy every 250 ms until stopped.
type statusWatch struct {
	stopped chan struct{}
	done    chan statusReads
	once    sync.Once
	reads   statusReads
}

func watchRecordingStatus(dc *devCluster, id string) *statusWatch {
	w := &statusWatch{stopped: make(chan struct{}), done: make(chan statusReads, 1)}
	go func() {
		var reads statusReads
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			at := time.Now()
			raw, err := restOnce(ctx, dc, "GET", "/openvidu/api/recordings/"+id, "")
			cancel()
			var rec recording
			if err == nil {
				err = json.Unmarshal(raw, &rec)
			}
			reads.at = append(reads.at, at)
			reads.failed = append(reads.failed, err != nil)
			if err != nil {
				reads.statuses = append(reads.statuses, err.Error())
			} else {
				reads.statuses = append(reads.statuses, rec.Status)
			}
			select {
			case <-w.stopped:
				w.done <- reads
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return w
}

// stop ends the reads (at once if the test failed) and returns them.
func (w *statusWatch) stop() statusReads {
	w.once.Do(func() {
		close(w.stopped)
		w.reads = <-w.done
	})
	return w.reads
}

// checkCrashRecording checks the COMPOSED 640x480 MP4 of a crash test: H.264
// video lasting the recording's wall time (started to the stop call) ±1 s,
// both tiles showing video 2 s after the start and 2 s before the end; it
// returns, for each tile, how long its picture was black or frozen around
// the crash (from 0.5 s before it to 15 s after), in seconds. Elsewhere a
// tile may be neither black (but in the first 2 s: the recording starts
// before the first key frames arrive, and the layout changes, with a black
// frame, as each stream's first comes) nor frozen over a second (the fake
// camera may stall under load: TestMasterCrashesAreInvisible's allowance).
func checkCrashRecording(t *testing.T, file string, wall, crashAt time.Duration) []float64 {
	t.Helper()
	info := ffprobe(t, file)
	if d := info.duration(); d < wall-time.Second || d > wall+time.Second {
		t.Errorf("the recording lasts %s, its wall time was %s", d, wall)
	}
	if v := info.codec("video"); v != "h264" {
		t.Errorf("video codec %q", v)
	}
	for _, at := range []time.Duration{2 * time.Second, wall - 2*time.Second} {
		shares := litShare(t, file, at, 640, 480, recordingTiles...)
		if shares[0] < 0.5 || shares[1] < 0.5 {
			t.Errorf("frame at %s: lit shares %.2f and %.2f, want both tiles showing video", at, shares[0], shares[1])
		}
	}
	crash := crashAt.Seconds()
	near := func(s [2]float64) bool { return s[1] >= crash-0.5 && s[0] <= crash+15 }
	gaps := make([]float64, len(recordingTiles))
	for i, rect := range recordingTiles {
		black, frozen := pictureGaps(t, file, rect, info.duration().Seconds())
		for _, s := range black {
			if !near(s) && s[1] > 2 {
				t.Errorf("tile %d: black picture at %.2f-%.2f s, away from the kill at %.2f s", i, s[0], s[1], crash)
			}
		}
		for _, s := range frozen {
			if !near(s) && s[1]-s[0] > 1 && s[1] > 2 {
				t.Errorf("tile %d: frozen picture at %.2f-%.2f s, away from the kill at %.2f s", i, s[0], s[1], crash)
			}
		}
		for _, s := range mergeSpans(append(black, frozen...)) {
			if near(s) {
				t.Logf("tile %d: black or frozen picture at %.2f-%.2f s (kill at %.2f s)", i, s[0], s[1], crash)
				gaps[i] += s[1] - s[0]
			}
		}
	}
	return gaps
}

// pictureGaps returns the stretches of a video (lasting duration seconds)
// where a rectangle [x0,y0,x1,y1) of the picture is black (FFmpeg's
// blackdetect, over 0.1 s) or frozen (freezedetect, over 0.5 s), in seconds
// from its start. Blackdetect reads the luma: the picture goes through RGB
// first, because the fake camera's green background is encoded with Y = 0
// (U = V = 0: RGB 0,135,0), which blackdetect would take for black.
func pictureGaps(t *testing.T, file string, rect [4]int, duration float64) (black, frozen [][2]float64) {
	t.Helper()
	vf := fmt.Sprintf("crop=%d:%d:%d:%d,format=rgb24,format=gray,blackdetect=d=0.1:pic_th=0.98:pix_th=0.10,freezedetect=n=-60dB:d=0.5",
		rect[2]-rect[0], rect[3]-rect[1], rect[0], rect[1])
	out, err := exec.Command("ffmpeg", "-v", "info", "-i", file, "-vf", vf, "-an", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("blackdetect and freezedetect %s: %v\n%s", file, err, tail(string(out), 20))
	}
	freeze := -1.0 // the start of a freeze not yet ended
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "black_start:"); i >= 0 {
			var start, end float64
			if _, err := fmt.Sscanf(line[i:], "black_start:%g black_end:%g", &start, &end); err == nil {
				black = append(black, [2]float64{start, end})
			}
		}
		if i := strings.Index(line, "freeze_start: "); i >= 0 {
			_, _ = fmt.Sscanf(line[i:], "freeze_start: %g", &freeze)
		}
		if i := strings.Index(line, "freeze_end: "); i >= 0 && freeze >= 0 {
			var end float64
			if _, err := fmt.Sscanf(line[i:], "freeze_end: %g", &end); err == nil {
				frozen = append(frozen, [2]float64{freeze, end})
				freeze = -1
			}
		}
	}
	if freeze >= 0 { // frozen to the end
		frozen = append(frozen, [2]float64{freeze, duration})
	}
	return black, frozen
}

// mergeSpans returns the union of intervals, sorted.
func mergeSpans(spans [][2]float64) [][2]float64 {
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	var out [][2]float64
	for _, s := range spans {
		if n := len(out); n > 0 && s[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], s[1])
			continue
		}
		out = append(out, s)
	}
	return out
}

// checkRecordingGaps reads the Recording object's gaps (a Chorus
// extension): with new segments after the kill, one per stream around the
// kill, none longer than maxGap and a bit; without, none.
func checkRecordingGaps(t *testing.T, dc *devCluster, id string, want bool, crashAt, maxGap time.Duration) {
	t.Helper()
	var rec protocol.Recording
	if err := json.Unmarshal(restCall(t, dc, "GET", "/openvidu/api/recordings/"+id, ""), &rec); err != nil {
		t.Fatal(err)
	}
	t.Logf("the Recording object's gaps: %+v", rec.Gaps)
	if !want {
		if len(rec.Gaps) != 0 {
			t.Errorf("the Recording object reports gaps, want none: %+v", rec.Gaps)
		}
		return
	}
	streams := map[string]bool{}
	for _, g := range rec.Gaps {
		streams[g.StreamID] = true
		start, end := time.Duration(g.StartTimeOffset)*time.Millisecond, time.Duration(g.EndTimeOffset)*time.Millisecond
		if start < crashAt-1500*time.Millisecond || start > crashAt+time.Second || end-start > maxGap+time.Second {
			t.Errorf("gap %+v: not the kill's at %s (at most %s long)", g, crashAt, maxGap)
		}
	}
	if len(streams) != 2 {
		t.Errorf("the Recording object reports gaps in %d streams, want both: %+v", len(streams), rec.Gaps)
	}
}
