package render_test

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chorus-rtc/chorus/recorder/capture"
	"github.com/chorus-rtc/chorus/recorder/internal/fakepublisher"
	"github.com/chorus-rtc/chorus/recorder/internal/probe"
	"github.com/chorus-rtc/chorus/recorder/render"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the simulated wall clock's origin: the recording starts there.
var t0 = time.UnixMilli(1_700_000_000_000)

const recordingID = "ses_Rec"

// publisher is one simulated publisher: its stream and its packets.
type publisher struct {
	stream  capture.Stream
	packets []fakepublisher.Packet
}

func newPublisher(t *testing.T, ctx context.Context, id string, src fakepublisher.Source, start time.Duration) publisher {
	t.Helper()
	dir := t.TempDir()
	packets, err := fakepublisher.Make(ctx, dir, src, t0.Add(start), fakepublisher.Impairment{
		Loss: 0.005, Reorder: 0.02, Duplicate: 0.01, Jitter: 15 * time.Millisecond, Seed: uint64(len(id)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return publisher{
		stream: capture.Stream{
			StreamID: "str_CAM_" + id + "_con_" + id, ConnectionID: "con_" + id,
			ClientData: "client " + id, ServerData: "server " + id,
			HasAudio: src.AudioHz > 0, HasVideo: src.Video != "", TypeOfVideo: "CAMERA", VideoCodec: src.VideoCodec,
		},
		packets: packets,
	}
}

// window is a stretch of time a worker records a stream in one segment;
// crash ends it without closing it.
type window struct {
	from, to time.Duration
	take     int
	crash    bool
}

// record writes p's packets that arrive in each window into a segment of
// the working directory work.
func record(t *testing.T, work string, p publisher, windows ...window) {
	t.Helper()
	for i, w := range windows {
		seg, err := capture.Open(capture.Config{
			WorkDir: work, RecordingID: recordingID, Stream: p.stream, Take: w.take,
			SegmentID: "w" + string(rune('a'+i)),
		}, t0.Add(w.from))
		if err != nil {
			t.Fatal(err)
		}
		for _, pkt := range fakepublisher.Between(p.packets, t0.Add(w.from), t0.Add(w.to)) {
			if pkt.Kind == fakepublisher.Video {
				err = seg.WriteVideo(pkt.Packet, pkt.At)
			} else {
				err = seg.WriteAudio(pkt.Packet, pkt.At)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if w.crash {
			err = seg.Abandon()
		} else {
			err = seg.Close(t0.Add(w.to))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func within(t *testing.T, what string, got, want, tolerance time.Duration) {
	t.Helper()
	if d := got - want; d > tolerance || d < -tolerance {
		t.Errorf("%s = %v, want %v ± %v", what, got, want, tolerance)
	}
}

// newRenderer returns a renderer whose temporary files go to tmp.
func newRenderer(t *testing.T) (r *render.Renderer, tmp string) {
	t.Helper()
	tmp = t.TempDir()
	r, err := render.New(render.Config{TempDir: tmp, Preset: "ultrafast"})
	if err != nil {
		t.Fatal(err)
	}
	return r, tmp
}

func TestComposed(t *testing.T) {
	fakepublisher.RequireFFmpeg(t)
	ctx := context.Background()
	// A: VP8 test pattern with a 440 Hz tone from 0 s; B: H.264 blue from
	// 1 s with a 660 Hz tone.
	a := newPublisher(t, ctx, "A", fakepublisher.Source{
		Video: "testsrc=size=320x240:rate=15", VideoCodec: capture.CodecVP8, FrameRate: 15, AudioHz: 440, Duration: 5 * time.Second,
	}, 0)
	b := newPublisher(t, ctx, "B", fakepublisher.Source{
		Video: "color=c=0x2050d0:size=240x240:rate=15", VideoCodec: capture.CodecH264, FrameRate: 15, AudioHz: 660, Duration: 3 * time.Second,
	}, time.Second)

	// What a half of the picture shows.
	const (
		black   = "black"
		pattern = "test pattern" // A
		blue    = "blue"         // B
	)
	type frameCheck struct {
		at          time.Duration
		left, right string
	}
	cases := []struct {
		name     string
		hasAudio bool
		hasVideo bool
		stop     time.Duration
		record   func(t *testing.T, work string)
		frames   []frameCheck
		// silences are the expected stretches without sound (> 300 ms).
		silences []probe.Interval
		// tonesB are stretches where B's 660 Hz tone is heard (true) or
		// not.
		tonesB map[probe.Interval]bool
	}{
		{
			name: "two streams", hasAudio: true, hasVideo: true, stop: 4500 * time.Millisecond,
			record: func(t *testing.T, work string) {
				record(t, work, a, window{from: 0, to: 4500 * time.Millisecond})
				record(t, work, b, window{from: time.Second, to: 4 * time.Second})
			},
			// Alone, A fills the picture; with B (1 s to 4 s), two tiles
			// side by side.
			frames: []frameCheck{
				{at: 800 * time.Millisecond, left: pattern, right: pattern},
				{at: 1200 * time.Millisecond, left: pattern, right: blue},
				{at: 3800 * time.Millisecond, left: pattern, right: blue},
				{at: 4200 * time.Millisecond, left: pattern, right: pattern},
			},
			// B's sound is mixed in while B is recorded (its first 80 ms are
			// the Ogg pre-skip).
			tonesB: map[probe.Interval]bool{
				{Start: 200 * time.Millisecond, End: 900 * time.Millisecond}:   false,
				{Start: 1200 * time.Millisecond, End: 3900 * time.Millisecond}: true,
				{Start: 4100 * time.Millisecond, End: 4500 * time.Millisecond}: false,
			},
		},
		{
			// A's worker crashes at 1.5 s, another resumes at 3 s: black
			// between, and the output still lasts the whole recording.
			name: "crash gap", hasAudio: true, hasVideo: true, stop: 4500 * time.Millisecond,
			record: func(t *testing.T, work string) {
				record(t, work, a, window{from: 0, to: 1500 * time.Millisecond, crash: true}, window{from: 3 * time.Second, to: 4500 * time.Millisecond})
			},
			// The crashed worker's file is used up to its last complete
			// frame, past its last checkpoint (1 s). Sound resumes 80 ms
			// after the new segment starts: the Ogg pre-skip.
			frames: []frameCheck{
				{at: 1050 * time.Millisecond, left: pattern, right: pattern},
				{at: 2200 * time.Millisecond, left: black, right: black},
				{at: 3100 * time.Millisecond, left: pattern, right: pattern},
			},
			silences: []probe.Interval{{Start: crashLag, End: 3080 * time.Millisecond}},
		},
		{
			name: "video only", hasVideo: true, stop: 3 * time.Second,
			record: func(t *testing.T, work string) {
				record(t, work, a, window{from: 0, to: 3 * time.Second})
			},
			frames: []frameCheck{{at: 1500 * time.Millisecond, left: pattern, right: pattern}},
		},
		{
			// The publisher's encoder halves its resolution at 1.5 s (a
			// keyframe of the new size), as WebRTC senders do under
			// congestion: the tile keeps its size.
			name: "resolution change", hasVideo: true, stop: 3 * time.Second,
			record: func(t *testing.T, work string) {
				small := newPublisher(t, ctx, "A", fakepublisher.Source{
					Video: "testsrc=size=160x120:rate=15", VideoCodec: capture.CodecVP8, FrameRate: 15, Duration: 1500 * time.Millisecond,
				}, 1500*time.Millisecond)
				p := publisher{stream: a.stream, packets: fakepublisher.Continue(
					fakepublisher.Between(a.packets, t0, t0.Add(1500*time.Millisecond)), small.packets)}
				record(t, work, p, window{from: 0, to: 3 * time.Second})
			},
			frames: []frameCheck{{at: time.Second, left: pattern, right: pattern}, {at: 2500 * time.Millisecond, left: pattern, right: pattern}},
		},
		{
			// A recording nobody published in: black and silent.
			name: "empty", hasAudio: true, hasVideo: true, stop: 2 * time.Second,
			record:   func(t *testing.T, work string) {},
			frames:   []frameCheck{{at: time.Second, left: black, right: black}},
			silences: []probe.Interval{{Start: 0, End: 2 * time.Second}},
		},
		{
			name: "audio only", hasAudio: true, stop: 3 * time.Second,
			record: func(t *testing.T, work string) {
				record(t, work, a, window{from: 0, to: 3 * time.Second})
				record(t, work, b, window{from: time.Second, to: 3 * time.Second})
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			work, out := t.TempDir(), keepDir(t)
			tc.record(t, work)
			rec := render.Recording{
				ID: recordingID, Name: "MyRecording", SessionID: recordingID, OutputMode: render.Composed,
				HasAudio: tc.hasAudio, HasVideo: tc.hasVideo, Resolution: "320x240", FrameRate: 15,
				CreatedAt: t0, StoppedAt: t0.Add(tc.stop),
			}
			r, tmp := newRenderer(t)
			res, err := r.Render(ctx, rec, work, out)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("rendered in %v of CPU", res.CPU)
			assertEmpty(t, tmp)
			wantFile, wantFormat := "MyRecording.mp4", "mov,mp4,m4a,3gp,3g2,mj2"
			if !tc.hasVideo {
				wantFile, wantFormat = "MyRecording.webm", "matroska,webm"
			}
			if res.File != filepath.Join(out, wantFile) || res.Duration != tc.stop {
				t.Errorf("result %+v, want %s lasting %v", res, wantFile, tc.stop)
			}
			p, err := probe.File(ctx, res.File)
			if err != nil {
				t.Fatal(err)
			}
			if p.Format.FormatName != wantFormat {
				t.Errorf("format %q, want %q", p.Format.FormatName, wantFormat)
			}
			within(t, "duration", p.Duration(), tc.stop, 100*time.Millisecond)
			v, hasV := p.Kind("video")
			au, hasA := p.Kind("audio")
			if hasV != tc.hasVideo || hasA != tc.hasAudio {
				t.Fatalf("streams %+v, want video %v audio %v", p.Streams, tc.hasVideo, tc.hasAudio)
			}
			if hasA {
				wantCodec := "aac"
				if !tc.hasVideo {
					wantCodec = "opus"
				}
				if au.CodecName != wantCodec || au.Channels != 2 {
					t.Errorf("audio %+v, want stereo %s", au, wantCodec)
				}
			}
			if hasV {
				if v.CodecName != "h264" || v.Width != 320 || v.Height != 240 || v.FrameRate() != 15 {
					t.Errorf("video %+v, want h264 320x240 at 15 fps", v)
				}
				if _, err := os.Stat(filepath.Join(out, recordingID+".jpg")); err != nil || res.Thumbnail == "" {
					t.Errorf("thumbnail %q: %v", res.Thumbnail, err)
				}
				for _, fc := range tc.frames {
					f, err := probe.FrameAt(ctx, res.File, fc.at, 320, 240)
					if err != nil {
						t.Fatal(err)
					}
					shows := func(x0, x1 int) string {
						switch {
						case f.Lit(x0, 0, x1, 240) < 0.05:
							return black
						case f.Blue(x0, 0, x1, 240) > 0.9:
							return blue
						case f.Lit(x0, 0, x1, 240) > 0.5:
							return pattern
						}
						return "something else"
					}
					if left, right := shows(0, 160), shows(160, 320); left != fc.left || right != fc.right {
						t.Errorf("frame at %v shows %s | %s, want %s | %s", fc.at, left, right, fc.left, fc.right)
					}
				}
			}
			if hasA {
				silences, err := probe.Silences(ctx, res.File, 300*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				if len(silences) != len(tc.silences) {
					t.Fatalf("silences %v, want %v", silences, tc.silences)
				}
				for i, s := range silences {
					checkStart(t, "silence", s.Start, tc.silences[i].Start)
					within(t, "silence end", s.End, tc.silences[i].End, 30*time.Millisecond)
				}
				for iv, heard := range tc.tonesB {
					db, err := probe.ToneLevel(ctx, res.File, 660, iv.Start, iv.End)
					if err != nil {
						t.Fatal(err)
					}
					if heard != (db > -30) {
						t.Errorf("660 Hz at %v-%v: %.1f dB, want heard %v", iv.Start, iv.End, db, heard)
					}
				}
			}
			entries, _ := os.ReadDir(out)
			if want := map[bool]int{true: 2, false: 1}[tc.hasVideo]; len(entries) != want {
				t.Errorf("output directory holds %d files, want %d", len(entries), want)
			}
		})
	}
}

// keepDir is the test's output directory: a temporary one, or, to look at
// the files, one under $RECORDER_TEST_KEEP.
func keepDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("RECORDER_TEST_KEEP")
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, filepath.FromSlash(t.Name()))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestIndividual(t *testing.T) {
	fakepublisher.RequireFFmpeg(t)
	ctx := context.Background()
	a := newPublisher(t, ctx, "A", fakepublisher.Source{
		Video: "testsrc=size=320x240:rate=15", VideoCodec: capture.CodecVP8, FrameRate: 15, AudioHz: 440, Duration: 5 * time.Second,
	}, 0)
	b := newPublisher(t, ctx, "B", fakepublisher.Source{
		Video: "color=c=0x2050d0:size=240x240:rate=15", VideoCodec: capture.CodecH264, FrameRate: 15, AudioHz: 660, Duration: 3 * time.Second,
	}, time.Second)
	c := newPublisher(t, ctx, "C", fakepublisher.Source{AudioHz: 880, Duration: 3 * time.Second}, 500*time.Millisecond)
	c.stream.TypeOfVideo = ""

	work, out := t.TempDir(), keepDir(t)
	// A: a crash from 1.5 s to 2.5 s (the new worker's video waits for the
	// keyframe at 3 s), then A's recording stops and starts again (take 1).
	record(t, work, a,
		window{from: 0, to: 1500 * time.Millisecond, crash: true},
		window{from: 2500 * time.Millisecond, to: 3500 * time.Millisecond},
		window{from: 4 * time.Second, to: 5 * time.Second, take: 1})
	record(t, work, b, window{from: time.Second, to: 4 * time.Second})
	record(t, work, c, window{from: 500 * time.Millisecond, to: 3500 * time.Millisecond})

	rec := render.Recording{
		ID: recordingID, Name: "MyRecording", SessionID: recordingID, OutputMode: render.Individual,
		HasAudio: true, HasVideo: true, CreatedAt: t0, StoppedAt: t0.Add(5 * time.Second),
	}
	r, tmp := newRenderer(t)
	res, err := r.Render(ctx, rec, work, out)
	if err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, tmp)
	if entries, _ := os.ReadDir(out); res.File != filepath.Join(out, "MyRecording.zip") || len(entries) != 1 {
		t.Errorf("output %s among %d files, want MyRecording.zip alone", res.File, len(entries))
	}
	files := unzip(t, res.File, t.TempDir())
	var sync render.SyncFile
	if err := json.Unmarshal(files["MyRecording.json"], &sync); err != nil {
		t.Fatal(err)
	}
	if sync.CreatedAt != t0.UnixMilli() || sync.ID != recordingID || sync.Name != "MyRecording" || sync.SessionID != recordingID {
		t.Errorf("sync file header %+v", sync)
	}
	// The JSON has exactly OpenVidu's field names.
	var raw struct {
		Files []map[string]any `json:"files"`
	}
	if err := json.Unmarshal(files["MyRecording.json"], &raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range raw.Files {
		keys := make([]string, 0, len(f))
		for k := range f {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		want := "clientData connectionId endTimeOffset hasAudio hasVideo serverData size startTimeOffset streamId typeOfVideo"
		if f["hasVideo"] == false {
			want = "clientData connectionId endTimeOffset hasAudio hasVideo serverData size startTimeOffset streamId"
		}
		if got := strings.Join(keys, " "); got != want {
			t.Errorf("sync entry fields %q, want %q", got, want)
		}
	}

	cases := []struct {
		file          string
		stream        string
		start, end    time.Duration
		video, audio  string
		width, height int
		typeOfVideo   string
	}{
		{"str_CAM_A_con_A.webm", a.stream.StreamID, 0, 3500 * time.Millisecond, "vp8", "opus", 320, 240, "CAMERA"},
		{"str_CAM_C_con_C.webm", c.stream.StreamID, 500 * time.Millisecond, 3500 * time.Millisecond, "", "opus", 0, 0, ""},
		{"str_CAM_B_con_B.mkv", b.stream.StreamID, time.Second, 4 * time.Second, "h264", "opus", 240, 240, "CAMERA"},
		{"str_CAM_A_con_A-1.webm", a.stream.StreamID, 4 * time.Second, 5 * time.Second, "vp8", "opus", 320, 240, "CAMERA"},
	}
	if len(sync.Files) != len(cases) || len(files) != len(cases)+1 {
		t.Fatalf("sync file lists %d files, the zip holds %d; want %d", len(sync.Files), len(files)-1, len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			e := sync.Files[i]
			data, ok := files[tc.file]
			if !ok {
				t.Fatalf("%s not in the zip", tc.file)
			}
			if e.StreamID != tc.stream || e.Size != int64(len(data)) || e.HasVideo != (tc.video != "") || !e.HasAudio ||
				e.TypeOfVideo != tc.typeOfVideo || e.ClientData == "" || e.ServerData == "" || e.ConnectionID == "" {
				t.Errorf("sync entry %+v for %s (%d bytes)", e, tc.file, len(data))
			}
			within(t, "startTimeOffset", time.Duration(e.StartTimeOffset)*time.Millisecond, tc.start, 40*time.Millisecond)
			within(t, "endTimeOffset", time.Duration(e.EndTimeOffset)*time.Millisecond, tc.end, 100*time.Millisecond)

			file := filepath.Join(t.TempDir(), tc.file)
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := probe.File(ctx, file)
			if err != nil {
				t.Fatal(err)
			}
			v, hasV := p.Kind("video")
			au, hasA := p.Kind("audio")
			if hasV != (tc.video != "") || (hasV && (v.CodecName != tc.video || v.Width != tc.width || v.Height != tc.height)) {
				t.Errorf("video %+v, want %s %dx%d", v, tc.video, tc.width, tc.height)
			}
			if !hasA || au.CodecName != tc.audio {
				t.Errorf("audio %+v, want %s", au, tc.audio)
			}
			// The file lasts as long as the offsets say, crash gap included.
			for _, kind := range []string{"video", "audio"} {
				if kind == "video" && !hasV {
					continue
				}
				first, end, _, err := probe.PacketSpan(ctx, file, kind)
				if err != nil {
					t.Fatal(err)
				}
				within(t, kind+" end", end, time.Duration(e.EndTimeOffset-e.StartTimeOffset)*time.Millisecond, 120*time.Millisecond)
				within(t, kind+" start", first, 0, 40*time.Millisecond)
			}
			if _, err := probe.Decode(ctx, file); err != nil {
				t.Error(err)
			}
			if i != 0 {
				return
			}
			// A's crash gap is a jump of the timeline: video from the last
			// frame before the crash to the keyframe at 3 s, audio from the
			// crash to 2.5 s.
			times, err := probe.PacketTimes(ctx, file, "video")
			if err != nil {
				t.Fatal(err)
			}
			gapStart, gapEnd := longestGap(times)
			checkStart(t, "video gap", gapStart, crashLag)
			within(t, "video gap end", gapEnd, 3*time.Second, 20*time.Millisecond)
			silences, err := probe.Silences(ctx, file, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if len(silences) != 1 {
				t.Fatalf("silences %v, want one during the crash", silences)
			}
			checkStart(t, "silence", silences[0].Start, crashLag)
			within(t, "silence end", silences[0].End, 2500*time.Millisecond, 30*time.Millisecond)
		})
	}
}

// crashLag stands for when the media of a worker that crashed at 1.5 s
// ends: what it wrote before dying lags what it received by up to the
// sample builder's wait for a lost packet (500 ms for audio).
const crashLag = -1

// checkStart checks that a gap that a crash at 1.5 s caused starts between
// 1 s and 1.5 s.
func checkStart(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if want != crashLag {
		within(t, what+" start", got, want, 60*time.Millisecond)
	} else if got < time.Second || got > 1500*time.Millisecond {
		t.Errorf("%s starts at %v, want between 1 s and 1.5 s (the crash)", what, got)
	}
}

// longestGap returns the longest stretch between two consecutive times.
func longestGap(times []time.Duration) (from, to time.Duration) {
	for i := 1; i < len(times); i++ {
		if times[i]-times[i-1] > to-from {
			from, to = times[i-1], times[i]
		}
	}
	return from, to
}

// unzip extracts a zip into dir and returns its files' contents by name.
func unzip(t *testing.T, file, dir string) map[string][]byte {
	t.Helper()
	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = b
	}
	return out
}

func TestRenderErrors(t *testing.T) {
	fakepublisher.RequireFFmpeg(t)
	ctx := context.Background()
	a := newPublisher(t, ctx, "A", fakepublisher.Source{
		Video: "testsrc=size=160x120:rate=15", VideoCodec: capture.CodecVP8, FrameRate: 15, Duration: time.Second,
	}, 0)
	rec := render.Recording{ID: recordingID, HasVideo: true, Resolution: "160x120", FrameRate: 15, CreatedAt: t0, StoppedAt: t0.Add(time.Second)}

	t.Run("ffmpeg fails", func(t *testing.T) {
		work, out, tmp := t.TempDir(), t.TempDir(), t.TempDir()
		record(t, work, a, window{from: 0, to: time.Second})
		found, err := capture.List(work)
		if err != nil || len(found) != 1 {
			t.Fatal(found, err)
		}
		if err := os.WriteFile(filepath.Join(found[0].Dir, capture.VideoVP8File), []byte("not an ivf file"), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := render.New(render.Config{TempDir: tmp})
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Render(ctx, rec, work, out)
		var ferr *render.FFmpegError
		if !errors.As(err, &ferr) || !strings.Contains(ferr.Stderr, "video.ivf") || ferr.Step != "composed "+recordingID {
			t.Fatalf("Render = %v, want an FFmpegError naming the file", err)
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Errorf("%v does not wrap the exit error", err)
		}
		t.Logf("error: %v", err)
		assertEmpty(t, out, tmp)
	})

	t.Run("segment of another recording", func(t *testing.T) {
		work, out, tmp := t.TempDir(), t.TempDir(), t.TempDir()
		record(t, work, a, window{from: 0, to: time.Second})
		r, err := render.New(render.Config{TempDir: tmp})
		if err != nil {
			t.Fatal(err)
		}
		other := rec
		other.ID = "ses_Other"
		if _, err := r.Render(ctx, other, work, out); !errors.Is(err, render.ErrSegments) {
			t.Errorf("Render = %v, want ErrSegments", err)
		}
		assertEmpty(t, out, tmp)
	})

	t.Run("context ends", func(t *testing.T) {
		out, tmp := t.TempDir(), t.TempDir()
		r, err := render.New(render.Config{TempDir: tmp, Preset: "slow"})
		if err != nil {
			t.Fatal(err)
		}
		// Minutes of encoding, killed after 300 ms.
		long := render.Recording{ID: recordingID, HasAudio: true, HasVideo: true, Resolution: "1280x720", FrameRate: 30,
			CreatedAt: t0, StoppedAt: t0.Add(time.Hour)}
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = r.Render(ctx, long, t.TempDir(), out)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Render = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Render returned %v after the deadline", d)
		}
		assertEmpty(t, out, tmp)
	})

	t.Run("no ffmpeg", func(t *testing.T) {
		if _, err := render.New(render.Config{FFmpeg: filepath.Join(t.TempDir(), "ffmpeg")}); !errors.Is(err, render.ErrConfig) {
			t.Errorf("New = %v, want ErrConfig", err)
		}
	})
}

// assertEmpty checks that a render left nothing behind in dirs.
func assertEmpty(t *testing.T, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("%s left behind in %s", e.Name(), dir)
		}
	}
}

// BenchmarkComposed measures a COMPOSED render of two 640x480 streams (VP8
// and H.264, 30 fps, with audio) into a 10 s 640x480 25 fps MP4 with the
// default Config (libx264 veryfast). cpu-s/op is the FFmpeg processes' user
// + system CPU time; run it alone:
//
//	go test -run '^$' -bench BenchmarkComposed -benchtime 3x ./recorder/render/
func BenchmarkComposed(b *testing.B) {
	fakepublisher.RequireFFmpeg(b)
	ctx := context.Background()
	work := b.TempDir()
	for i, src := range []fakepublisher.Source{
		{Video: "testsrc=size=640x480:rate=30", VideoCodec: capture.CodecVP8, FrameRate: 30, AudioHz: 440, Duration: 10 * time.Second},
		{Video: "testsrc2=size=640x480:rate=30", VideoCodec: capture.CodecH264, FrameRate: 30, AudioHz: 660, Duration: 10 * time.Second},
	} {
		packets, err := fakepublisher.Make(ctx, b.TempDir(), src, t0, fakepublisher.Impairment{})
		if err != nil {
			b.Fatal(err)
		}
		id := string(rune('A' + i))
		seg, err := capture.Open(capture.Config{WorkDir: work, RecordingID: recordingID, Stream: capture.Stream{
			StreamID: "str_CAM_" + id, HasAudio: true, HasVideo: true, VideoCodec: src.VideoCodec,
		}}, t0)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range packets {
			if p.Kind == fakepublisher.Video {
				err = seg.WriteVideo(p.Packet, p.At)
			} else {
				err = seg.WriteAudio(p.Packet, p.At)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if err := seg.Close(t0.Add(10 * time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	r, err := render.New(render.Config{TempDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	rec := render.Recording{ID: recordingID, HasAudio: true, HasVideo: true, Resolution: "640x480", FrameRate: 25,
		CreatedAt: t0, StoppedAt: t0.Add(10 * time.Second)}
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := r.Render(ctx, rec, work, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		cpu += res.CPU
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}
