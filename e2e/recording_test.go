//go:build e2e

package e2e

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// recording is openvidu-node-client's Recording, as pages.cjs prints it.
type recording struct {
	ID         string  `json:"id"`
	SessionID  string  `json:"sessionId"`
	CreatedAt  int64   `json:"createdAt"`
	Size       int64   `json:"size"`
	Duration   float64 `json:"duration"`
	URL        string  `json:"url"`
	Status     string  `json:"status"`
	Properties struct {
		Name       string `json:"name"`
		OutputMode string `json:"outputMode"`
		Resolution string `json:"resolution"`
		FrameRate  int    `json:"frameRate"`
	} `json:"properties"`
}

// recAnswer is pages.cjs's answer to a rec command.
type recAnswer struct {
	Recording  *recording  `json:"recording"`
	Recordings []recording `json:"recordings"`
	Deleted    bool        `json:"deleted"`
	Status     int         `json:"status"`
}

// rec runs an openvidu-node-client recording call in pages.cjs.
func (p *pages) rec(args ...string) recAnswer {
	p.t.Helper()
	var r recAnswer
	p.do("rec "+strings.Join(args, " "), &r)
	return r
}

// startRecording starts a recording of session sid with properties (JSON)
// through openvidu-node-client and returns its id; anything but started
// fails the test.
func (p *pages) startRecording(sid, properties string) string {
	p.t.Helper()
	r := p.rec("start", sid, properties)
	if r.Recording == nil || r.Recording.Status != "started" {
		p.t.Fatalf("startRecording %s: %+v", properties, r)
	}
	return r.Recording.ID
}

// stopRecording stops a recording; anything but stopped fails the test.
func (p *pages) stopRecording(id string) {
	p.t.Helper()
	if r := p.rec("stop", id); r.Recording == nil || r.Recording.Status != "stopped" {
		p.t.Fatalf("stopRecording %s: %+v", id, r)
	}
}

// waitRecording polls getRecording until the recording has a status.
func (p *pages) waitRecording(id, status string, timeout time.Duration) recording {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := p.rec("get", id)
		if r.Recording != nil && r.Recording.Status == status {
			return *r.Recording
		}
		if r.Recording != nil && r.Recording.Status == "failed" || time.Now().After(deadline) {
			p.t.Fatalf("recording %s is not %s: %+v %+v", id, status, r.Recording, r.Status)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// pageEvent returns when each page saw an event of a type with a detail
// prefix (0: not seen), by connection id.
func pageEvent(st []pageStats, typ, detail string) map[string]int64 {
	out := map[string]int64{}
	for _, pg := range st {
		out[pg.ConnectionID] = 0
		for _, e := range pg.Events {
			if e.Type == typ && strings.HasPrefix(e.Detail, detail) {
				out[pg.ConnectionID] = e.At
				break
			}
		}
	}
	return out
}

// waitPageEvent waits until every page saw the event.
func waitPageEvent(t *testing.T, p *pages, typ, detail string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen := pageEvent(p.stats(), typ, detail)
		ok := true
		for _, at := range seen {
			ok = ok && at > 0
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pages did not all get %s %s: %v", typ, detail, seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ffprobeStreams is ffprobe's view of a media file.
type ffprobeStreams struct {
	Streams []struct {
		CodecType string `json:"codec_type"`
		CodecName string `json:"codec_name"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
	} `json:"streams"`
	Format struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

func ffprobe(t *testing.T, file string) ffprobeStreams {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	var r ffprobeStreams
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r ffprobeStreams) codec(kind string) string {
	for _, s := range r.Streams {
		if s.CodecType == kind {
			return s.CodecName
		}
	}
	return ""
}

func (r ffprobeStreams) duration() time.Duration {
	f, _ := strconv.ParseFloat(r.Format.Duration, 64)
	return time.Duration(f * float64(time.Second))
}

// litShare decodes the frame at a time and returns the share of pixels
// brighter than black in each rectangle [x0,y0,x1,y1).
func litShare(t *testing.T, file string, at time.Duration, width, height int, rects ...[4]int) []float64 {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-ss", fmt.Sprintf("%.3f", at.Seconds()), "-i", file,
		"-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-").Output()
	if err != nil || len(out) != width*height*3 {
		t.Fatalf("decode a frame of %s at %s: %v (%d bytes)", file, at, err, len(out))
	}
	shares := make([]float64, len(rects))
	for i, r := range rects {
		lit, all := 0, 0
		for y := r[1]; y < r[3]; y++ {
			for x := r[0]; x < r[2]; x++ {
				o := (y*width + x) * 3
				if int(out[o])+int(out[o+1])+int(out[o+2]) > 60 {
					lit++
				}
				all++
			}
		}
		shares[i] = float64(lit) / float64(all)
	}
	return shares
}

// TestRecordingBrowsers records two Chromium pages publishing with the real
// openvidu-browser (fake camera and microphone) through chorus dev with one
// recorder, driven by openvidu-node-client: COMPOSED at 640x480 gives an
// H.264 + AAC MP4 of the recording's wall time with both tiles lit, and the
// pages get recordingStarted/recordingStopped; INDIVIDUAL gives one playable
// WebM per stream and the JSON offsets of a page that joins during the
// recording, and two (<stream>.webm, <stream>-1.webm) for a page whose
// record property is turned off, then on. Issue 14, "How it must be tested".
func TestRecordingBrowsers(t *testing.T) {
	// A short automatic stop for the last part (the last participant
	// leaves during a recording); every other part keeps publishers in.
	dc := startDev(t, devOptions{Args: []string{"--masters", "1", "--media-nodes", "1", "--recorders", "1"},
		Env: []string{"CHORUS_RECORDING_AUTOSTOP_TIMEOUT=2"}})
	if dc.RecordingPath == "" {
		t.Fatal("chorus dev --recorders 1 reports no recording path")
	}
	p := startPages(t, dc)
	sid := "rec_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	joined := p.join(sid, 2)
	p.waitVideo(1, 30*time.Second)

	// COMPOSED, 640x480.
	recorderPID := dc.pid(t, "recorder_1")
	cpuBefore := processCPU(t, recorderPID)
	callAt := time.Now()
	id := p.startRecording(sid, `{"name":"composed","outputMode":"COMPOSED","resolution":"640x480","frameRate":25}`)
	startedAt := time.Now()
	t.Logf("start latency (REST call to started): %s", startedAt.Sub(callAt).Round(time.Millisecond))
	if again := p.rec("start", sid, `{}`); again.Status != 409 {
		t.Errorf("a second startRecording in the session: %+v, want 409", again)
	}
	waitPageEvent(t, p, "recordingStarted", id)
	time.Sleep(10 * time.Second)
	stopCall := time.Now()
	cpuCapture := processCPU(t, recorderPID) - cpuBefore
	p.stopRecording(id)
	stoppedAt := time.Now()
	waitPageEvent(t, p, "recordingStopped", id)
	ready := p.waitRecording(id, "ready", 60*time.Second)
	cpuAll := processCPU(t, recorderPID) - cpuBefore
	t.Logf("recorder CPU for a %s COMPOSED 640x480 recording of 2 participants: %s capturing (%.0f%% of a core), %s in all with the render (FFmpeg included)",
		stopCall.Sub(startedAt).Round(100*time.Millisecond), cpuCapture, 100*cpuCapture.Seconds()/stopCall.Sub(callAt).Seconds(), cpuAll)
	t.Logf("COMPOSED ready %s after stop; duration %.2f s, size %d", time.Since(stoppedAt).Round(time.Millisecond), ready.Duration, ready.Size)
	file := filepath.Join(dc.RecordingPath, id, "composed.mp4")
	info := ffprobe(t, file)
	wall := stopCall.Sub(startedAt) // the recording runs from started to the stop call
	if v, a := info.codec("video"), info.codec("audio"); v != "h264" || a != "aac" {
		t.Errorf("COMPOSED codecs %q + %q, want h264 + aac", v, a)
	}
	for _, s := range info.Streams {
		if s.CodecType == "video" && (s.Width != 640 || s.Height != 480) {
			t.Errorf("COMPOSED is %dx%d, want 640x480", s.Width, s.Height)
		}
	}
	if d := info.duration(); d < wall-time.Second || d > wall+time.Second+stoppedAt.Sub(stopCall) {
		t.Errorf("COMPOSED lasts %s, the recording's wall time was %s", d, wall)
	}
	if d := time.Duration(ready.Duration * float64(time.Second)); d < wall-time.Second || d > wall+time.Second+stoppedAt.Sub(stopCall) {
		t.Errorf("Recording.duration %s, the recording's wall time was %s", d, wall)
	}
	// BEST_FIT at 640x480 puts two videos side by side: both halves lit.
	for _, at := range []time.Duration{3 * time.Second, wall - 2*time.Second} {
		shares := litShare(t, file, at, 640, 480, recordingTiles...)
		if shares[0] < 0.5 || shares[1] < 0.5 {
			t.Errorf("frame at %s: lit share of the left tile %.2f, of the right tile %.2f: want both tiles showing video", at, shares[0], shares[1])
		}
	}
	if _, err := os.Stat(filepath.Join(dc.RecordingPath, id, id+".jpg")); err != nil {
		t.Errorf("COMPOSED thumbnail: %v", err)
	}
	listed := false
	for _, l := range p.rec("list").Recordings {
		listed = listed || l.ID == id && l.Status == "ready"
	}
	if !listed {
		t.Errorf("listRecordings does not list %s ready", id)
	}
	if r := p.rec("stop", id); r.Status != 404 {
		t.Errorf("stopRecording of a ready recording: %+v, want 404 (openvidu-server's)", r)
	}

	// INDIVIDUAL, with a third page joining during the recording.
	ind := p.startRecording(sid, `{"name":"individual","outputMode":"INDIVIDUAL"}`)
	time.Sleep(2 * time.Second)
	third := p.join(sid, 1)[0]
	p.waitVideo(2, 30*time.Second)
	time.Sleep(time.Second)
	// The second page's record turned off, then on (updateConnection): its
	// stream is recorded in two takes, two files (OpenVidu's <stream>-1).
	toggled := joined[1]
	patch := "/openvidu/api/sessions/" + sid + "/connection/" + toggled
	restCall(t, dc, "PATCH", patch, `{"record":false}`)
	recordOff := time.Now().UnixMilli()
	time.Sleep(1500 * time.Millisecond)
	restCall(t, dc, "PATCH", patch, `{"record":true}`)
	recordOn := time.Now().UnixMilli()
	time.Sleep(2500 * time.Millisecond)
	p.stopRecording(ind)
	p.waitRecording(ind, "ready", 60*time.Second)
	timings := p.timings()
	zr, err := zip.OpenReader(filepath.Join(dc.RecordingPath, ind, "individual.zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var sync struct {
		CreatedAt int64 `json:"createdAt"`
		Files     []struct {
			ConnectionID    string `json:"connectionId"`
			StreamID        string `json:"streamId"`
			StartTimeOffset int64  `json:"startTimeOffset"`
			EndTimeOffset   int64  `json:"endTimeOffset"`
		} `json:"files"`
	}
	dir := t.TempDir()
	media := map[string]string{}
	var order []string // the media files in the ZIP's order, which the JSON's entries follow
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(rc)
		rc.Close()
		if f.Name == "individual.json" {
			if err := json.Unmarshal(raw, &sync); err != nil {
				t.Fatal(err)
			}
			continue
		}
		media[f.Name] = filepath.Join(dir, f.Name)
		order = append(order, f.Name)
		if err := os.WriteFile(media[f.Name], raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(sync.Files) != 4 || len(media) != 4 {
		t.Fatalf("INDIVIDUAL: %d JSON entries and %d media files, want 4 (one per stream, two for the toggled one): %+v %v", len(sync.Files), len(media), sync, media)
	}
	conns := map[string]bool{joined[0]: true, joined[1]: true, third: true}
	for i, f := range sync.Files {
		if !conns[f.ConnectionID] {
			t.Errorf("INDIVIDUAL file of connection %s, not a page's", f.ConnectionID)
		}
		name := order[i]
		if name != f.StreamID+".webm" && name != f.StreamID+"-1.webm" {
			t.Errorf("the ZIP's file %d is %s, its JSON entry is of stream %s", i, name, f.StreamID)
			continue
		}
		file := media[name]
		info := ffprobe(t, file)
		if v, a := info.codec("video"), info.codec("audio"); v != "vp8" || a != "opus" {
			t.Errorf("%s: codecs %q + %q, want vp8 + opus", f.StreamID, v, a)
		}
		// The file lasts what its offsets say.
		if d, want := info.duration(), time.Duration(f.EndTimeOffset-f.StartTimeOffset)*time.Millisecond; d < want-500*time.Millisecond || d > want+500*time.Millisecond {
			t.Errorf("%s lasts %s, its offsets say %s", f.StreamID, d, want)
		}
		// The pages that were there from the start are recorded from the
		// start; the third from when it published.
		want := int64(0)
		switch {
		case f.ConnectionID == third:
			want = timings[third].PublishedAt - sync.CreatedAt
		case f.ConnectionID == toggled && name == f.StreamID+"-1.webm":
			want = recordOn - sync.CreatedAt // the second take, from record on
		case f.ConnectionID == toggled:
			if end := recordOff - sync.CreatedAt; f.EndTimeOffset < end-1000 || f.EndTimeOffset > end+1000 {
				t.Errorf("%s: the first take ends at %d ms, record went off at %d", name, f.EndTimeOffset, end)
			}
		}
		if f.StartTimeOffset < want-1000 || f.StartTimeOffset > want+1500 {
			t.Errorf("%s (connection %s): startTimeOffset %d ms, want %d ± 1000 (page published at %d, recording created at %d)",
				f.StreamID, f.ConnectionID, f.StartTimeOffset, want, timings[f.ConnectionID].PublishedAt, sync.CreatedAt)
		}
	}

	// Delete both; nothing is left on disk or in Redis once the session ends.
	for _, rid := range []string{id, ind} {
		if r := p.rec("delete", rid); !r.Deleted {
			t.Errorf("deleteRecording %s: %+v", rid, r)
		}
		if r := p.rec("get", rid); r.Status != 404 {
			t.Errorf("getRecording of deleted %s: %+v, want 404", rid, r)
		}
		if _, err := os.Stat(filepath.Join(dc.RecordingPath, rid)); !os.IsNotExist(err) {
			t.Errorf("deleted recording %s still on disk: %v", rid, err)
		}
	}
	// The last participant leaves during a recording: the session stays
	// open with its recording for the automatic stop's timeout, then the
	// recording stops and is rendered, the session closes, and neither the
	// session nor its recorder connection leaves anything in Redis.
	last := p.startRecording(sid, `{"name":"lastleft","outputMode":"COMPOSED","resolution":"640x480"}`)
	time.Sleep(2 * time.Second)
	p.reset()
	p.waitRecording(last, "ready", 60*time.Second)
	if r := p.rec("delete", last); !r.Deleted {
		t.Errorf("deleteRecording %s: %+v", last, r)
	}
	assertNoSessionKeys(t, dc)
	assertNoMasterConnections(t, dc)
}

// assertNoMasterConnections waits until no master's set of the connections
// whose WebSocket it holds (mconns) lists any connection: every session of
// the test is closed.
func assertNoMasterConnections(t *testing.T, dc *devCluster) {
	t.Helper()
	rdb := dc.redisClient(t)
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		keys, err := redisKeys(ctx, rdb, "chorus:e2e:{masters}:conns:*")
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, k := range keys {
			left = append(left, k+" "+strings.Join(rdb.SMembers(ctx, k).Val(), ","))
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections left in the masters' sets:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// processCPU is the CPU time a process and its waited-for children (FFmpeg)
// used so far: utime+stime+cutime+cstime of /proc/<pid>/stat (proc(5)), in
// clock ticks of 10 ms.
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name (which may hold spaces) in ")".
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime: fields 14-17
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// TestRecordingAlwaysAndAutostop: a session an application creates with
// openvidu-node-client in recordingMode ALWAYS is recorded from the moment
// its browser publishes, with its default recording properties; when the
// page leaves, the session stays open with its recording for
// OPENVIDU_RECORDING_AUTOSTOP_TIMEOUT (3 s here), then the recording stops
// (automaticStop), the session closes (automaticStop) and the file is
// rendered, lasting from the start to the automatic stop (recording.md).
func TestRecordingAlwaysAndAutostop(t *testing.T) {
	const autostop = 3 * time.Second
	h := startHook(t)
	dc := startDev(t, devOptions{Args: []string{"--masters", "1", "--media-nodes", "1", "--recorders", "1"},
		Env: eventEnv(h, "CHORUS_RECORDING_AUTOSTOP_TIMEOUT=3")})
	p := startPages(t, dc)
	sid := "always_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	var created struct{ Session string }
	p.do("session "+sid+` {"recordingMode":"ALWAYS","defaultRecordingProperties":{"name":"always","outputMode":"COMPOSED","resolution":"640x480","frameRate":25}}`, &created)
	if created.Session != sid {
		t.Fatalf("createSession: %+v", created)
	}
	if r := p.rec("list"); len(r.Recordings) != 0 {
		t.Fatalf("recordings before anybody published: %+v", r.Recordings)
	}
	p.join(sid, 1)
	started := p.waitRecording(sid, "started", 30*time.Second)
	if started.Properties.Name != "always" || started.Properties.OutputMode != "COMPOSED" || started.Properties.Resolution != "640x480" {
		t.Errorf("recording %+v, want the session's default properties", started.Properties)
	}
	waitPageEvent(t, p, "recordingStarted", sid)
	time.Sleep(3 * time.Second)

	var left struct{ Left bool }
	p.do("leave", &left)
	leftAt := time.Now()
	// Open with its recording through the timeout.
	time.Sleep(autostop / 2)
	if code, _, _ := api(t, dc, "GET", "/openvidu/api/sessions/"+sid, ""); code != 200 {
		t.Errorf("session %s answers %d during the autostop timeout, want 200", sid, code)
	}
	if r := p.rec("get", sid); r.Recording == nil || r.Recording.Status != "started" {
		t.Errorf("recording during the autostop timeout: %+v", r.Recording)
	}
	var stoppedAt int64
	h.waitFor(t, "recordingStatusChanged stopped (automaticStop)", 30*time.Second, func() bool {
		for _, e := range h.distinct(sid) {
			if e["event"] == "recordingStatusChanged" && e["status"] == "stopped" {
				if e["reason"] != "automaticStop" {
					t.Fatalf("recording stopped with %v, want automaticStop", e["reason"])
				}
				stoppedAt = int64(e["timestamp"].(float64))
				return true
			}
		}
		return false
	})
	// From the departure as the master saw it.
	for _, e := range h.distinct(sid) {
		if e["event"] == "participantLeft" {
			leftAt = time.UnixMilli(int64(e["timestamp"].(float64)))
		}
	}
	waited := time.UnixMilli(stoppedAt).Sub(leftAt)
	t.Logf("recording stopped %s after the last participant left (autostop timeout %s)", waited.Round(10*time.Millisecond), autostop)
	if waited < autostop || waited > autostop+2*time.Second {
		t.Errorf("recording stopped %s after the page left, want the %s timeout (+1 s sweep)", waited, autostop)
	}
	h.waitFor(t, "sessionDestroyed", 10*time.Second, func() bool {
		for _, e := range h.distinct(sid) {
			if e["event"] == "sessionDestroyed" {
				if e["reason"] != "automaticStop" {
					t.Errorf("sessionDestroyed reason %v, want automaticStop", e["reason"])
				}
				return true
			}
		}
		return false
	})
	ready := p.waitRecording(sid, "ready", 60*time.Second)
	info := ffprobe(t, filepath.Join(dc.RecordingPath, sid, "always.mp4"))
	wall := time.UnixMilli(stoppedAt).Sub(time.UnixMilli(started.CreatedAt))
	if d := info.duration(); d < wall-1500*time.Millisecond || d > wall+time.Second {
		t.Errorf("the file lasts %s, the recording ran %s (start to automatic stop)", d, wall)
	}
	t.Logf("ALWAYS recording: ready, %.2f s, %d bytes", ready.Duration, ready.Size)
}
