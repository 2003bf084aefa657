package render

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/recorder/capture"
)

func TestBestFitLayout(t *testing.T) {
	cases := []struct {
		n, width, height int
		want             []Tile
	}{
		{0, 640, 480, nil},
		{1, 640, 480, []Tile{{0, 0, 640, 480}}},
		// Side by side, as in OpenVidu's BEST_FIT screenshot.
		{2, 1280, 720, []Tile{{0, 0, 640, 720}, {640, 0, 640, 720}}},
		{2, 640, 480, []Tile{{0, 0, 320, 480}, {320, 0, 320, 480}}},
		// Three in a row would be too tall (3:2 at most): 2 + 1, centred.
		{3, 640, 480, []Tile{{0, 0, 320, 240}, {320, 0, 320, 240}, {160, 240, 320, 240}}},
		{4, 1280, 720, []Tile{{0, 0, 640, 360}, {640, 0, 640, 360}, {0, 360, 640, 360}, {640, 360, 640, 360}}},
		// A tall picture stacks them, tiles at most 16:9 wide.
		{2, 480, 1280, []Tile{{0, 0, 480, 640}, {0, 640, 480, 640}}},
		{2, 1920, 360, []Tile{{320, 0, 640, 360}, {960, 0, 640, 360}}},
		// Odd sizes stay even.
		{3, 1001, 721, []Tile{{0, 0, 500, 360}, {500, 0, 500, 360}, {250, 360, 500, 360}}},
	}
	for _, tc := range cases {
		got := BestFitLayout(tc.n, tc.width, tc.height)
		if len(got) != len(tc.want) {
			t.Errorf("BestFitLayout(%d, %dx%d) = %v, want %v", tc.n, tc.width, tc.height, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("BestFitLayout(%d, %dx%d) = %v, want %v", tc.n, tc.width, tc.height, got, tc.want)
				break
			}
		}
	}
	// Tiles never overlap and stay inside the picture.
	for n := 1; n <= 12; n++ {
		tiles := BestFitLayout(n, 1280, 720)
		for i, a := range tiles {
			if a.X < 0 || a.Y < 0 || a.X+a.W > 1280 || a.Y+a.H > 720 || a.W <= 0 || a.H <= 0 || a.X%2+a.Y%2+a.W%2+a.H%2 != 0 {
				t.Errorf("n=%d: tile %v outside 1280x720 or odd", n, a)
			}
			for _, b := range tiles[i+1:] {
				if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
					t.Errorf("n=%d: tiles %v and %v overlap", n, a, b)
				}
			}
		}
	}
}

func videoTake(id string, spans ...[2]int64) *take {
	t := &take{stream: capture.Stream{StreamID: id}}
	for _, s := range spans {
		t.video = append(t.video, &piece{start: s[0], end: s[1], file: id + ".ivf"})
	}
	return t
}

func TestVideoIntervals(t *testing.T) {
	a := videoTake("a", [2]int64{-500, 2000}, [2]int64{3000, 6000}) // a crash gap from 2 s to 3 s
	b := videoTake("b", [2]int64{1000, 4000})
	audioOnly := &take{stream: capture.Stream{StreamID: "c"}, audio: []*piece{{start: 0, end: 9000}}}
	got := videoIntervals([]*take{a, b, audioOnly}, 8000)
	want := []struct {
		start, end int64
		ids        string
	}{{0, 1000, "a"}, {1000, 4000, "a b"}, {4000, 6000, "a"}, {6000, 8000, ""}}
	if len(got) != len(want) {
		t.Fatalf("intervals %+v, want %+v", got, want)
	}
	for i, iv := range got {
		var ids []string
		for _, t := range iv.takes {
			ids = append(ids, t.stream.StreamID)
		}
		if iv.start != want[i].start || iv.end != want[i].end || strings.Join(ids, " ") != want[i].ids {
			t.Errorf("interval %d = [%d, %d) %v, want %+v", i, iv.start, iv.end, ids, want[i])
		}
	}
}

func TestTakeGaps(t *testing.T) {
	tests := []struct {
		name  string
		takes []*take
		want  []Gap
	}{
		{"one segment", []*take{videoTake("a", [2]int64{0, 9000})}, nil},
		{"a crash between segments", []*take{videoTake("a", [2]int64{0, 2000}, [2]int64{7500, 9000}), videoTake("b", [2]int64{0, 9000})},
			[]Gap{{StreamID: "a", Start: 2 * time.Second, End: 7500 * time.Millisecond}}},
		{"a renegotiation's short pause", []*take{videoTake("a", [2]int64{0, 2000}, [2]int64{2400, 9000})}, nil},
		{"audio only", []*take{{stream: capture.Stream{StreamID: "c"}, audio: []*piece{{start: 0, end: 1000}, {start: 3000, end: 4000}}}},
			[]Gap{{StreamID: "c", Start: time.Second, End: 3 * time.Second}}},
		// Two takes (record off, then on) are not a gap: each is a file.
		{"takes", []*take{videoTake("a", [2]int64{0, 2000}), {stream: capture.Stream{StreamID: "a"}, number: 1,
			video: []*piece{{start: 5000, end: 9000}}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := takeGaps(tt.takes); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("takeGaps = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestClipPieces(t *testing.T) {
	pieces := []*piece{
		{start: 3000, end: 5000},
		{start: -2000, end: -100}, // before the recording
		{start: 0, end: 3500},     // a worker that kept writing after the next one started
		{start: 9000, end: 9500},  // after the stop
	}
	got := clip(pieces, 8000)
	if len(got) != 2 || got[0].start != 0 || got[0].end != 3000 || got[1].start != 3000 || got[1].end != 5000 {
		t.Errorf("clip = %v %v", got[0], got[1])
	}
}

func TestComposedArgs(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	rec := Recording{ID: "r", HasAudio: true, HasVideo: true, Resolution: "640x480", FrameRate: 24, CreatedAt: t0, StoppedAt: t0.Add(10 * time.Second)}
	a := videoTake("a", [2]int64{0, 10000})
	a.audio = []*piece{{start: 0, end: 10000, file: "a.ogg", preSkip: 3840}}
	b := videoTake("b", [2]int64{5000, 8000})
	b.audio = []*piece{{start: -100, end: 8000, file: "b.ogg", preSkip: 3840}}
	args, graph := composedArgs(rec, Config{Preset: "veryfast", CRF: 23}, []*take{a, b}, "g.txt", "out.mp4")
	for _, want := range []string{
		"color=c=black:s=640x480:r=24:d=10.000,format=yuv420p[bg0]",
		// a is split in three: alone, beside b, alone again.
		"[0:v]setpts=PTS-STARTPTS+0.000/TB,split=3[v0_0][v0_1][v0_2]",
		"[v0_1]trim=start=3.000:end=8.000,scale=320:480:force_original_aspect_ratio=increase,crop=320:480,setsar=1[v0_1_t]",
		"[v1_0]trim=start=5.000:end=8.000,scale=320:480",
		"overlay=x=320:y=0:eof_action=pass:enable='gte(t,5.000)*lt(t,8.000)'",
		// a's audio plays from its 80 ms (pre-skip); b's started before the
		// recording: its first 20 ms are cut.
		"[2:a]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,atrim=start_sample=0:end_sample=476160,asetpts=N/SR/TB,adelay=delays=3840S:all=1[a2]",
		"atrim=start_sample=960:end_sample=384960,asetpts=N/SR/TB,adelay=delays=0S:all=1[a3]",
		"[silence][a2][a3]amix=inputs=3:duration=first:dropout_transition=0:normalize=0[aout]",
	} {
		if !strings.Contains(graph, want) {
			t.Errorf("graph lacks %q:\n%s", want, graph)
		}
	}
	cmd := strings.Join(args, " ")
	for _, want := range []string{
		"-reinit_filter 0 -i a.ivf -reinit_filter 0 -i b.ivf -i a.ogg -i b.ogg -filter_complex_script g.txt",
		"-map [vout] -c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -r 24 -map [aout] -c:a aac -b:a 128000 -t 10.000",
		"-f mp4 out.mp4",
	} {
		if !strings.Contains(cmd, want) {
			t.Errorf("arguments lack %q: %s", want, cmd)
		}
	}
	args, _ = composedArgs(rec, Config{Preset: "veryfast", CRF: 23, Threads: 1}, nil, "g.txt", "out.mp4")
	if cmd := strings.Join(args, " "); !strings.Contains(cmd, "-filter_complex_threads 1 ") || !strings.Contains(cmd, "-threads 1 ") {
		t.Errorf("Threads 1 not passed on: %s", cmd)
	}
}

func TestConcatList(t *testing.T) {
	got := concatList([]*piece{{file: "/w/it's/a.ivf", start: 100, end: 1500}, {file: "/w/b.ivf", start: 2500, end: 4000}})
	want := "ffconcat version 1.0\n" +
		"file '/w/it'\\''s/a.ivf'\nduration 2.400\noutpoint 1.400\n" +
		"file '/w/b.ivf'\nduration 1.500\noutpoint 1.500\n"
	if got != want {
		t.Errorf("concatList =\n%s\nwant\n%s", got, want)
	}
}

func TestNormalize(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	good := Recording{ID: "ses_A", HasAudio: true, HasVideo: true, CreatedAt: t0, StoppedAt: t0.Add(time.Second)}
	rec, err := normalize(good)
	if err != nil || rec.Name != "ses_A" || rec.OutputMode != Composed || rec.Resolution != "1280x720" || rec.FrameRate != 25 {
		t.Errorf("defaults: %+v, %v", rec, err)
	}
	for name, change := range map[string]func(*Recording){
		"no id":              func(r *Recording) { r.ID = "" },
		"path in name":       func(r *Recording) { r.Name = "../x" },
		"no media":           func(r *Recording) { r.HasAudio, r.HasVideo = false, false },
		"stopped before":     func(r *Recording) { r.StoppedAt = t0 },
		"output mode":        func(r *Recording) { r.OutputMode = "BOTH" },
		"custom layout":      func(r *Recording) { r.RecordingLayout = "CUSTOM" },
		"resolution small":   func(r *Recording) { r.Resolution = "99x480" },
		"resolution large":   func(r *Recording) { r.Resolution = "2000x480" },
		"resolution garbage": func(r *Recording) { r.Resolution = "640*480" },
		"frame rate":         func(r *Recording) { r.FrameRate = 121 },
	} {
		r := good
		change(&r)
		if _, err := normalize(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// INDIVIDUAL and audio-only ignore the video properties, as OpenVidu.
	r := good
	r.OutputMode, r.Resolution = Individual, "bad"
	if _, err := normalize(r); err != nil {
		t.Errorf("INDIVIDUAL with a bad resolution: %v", err)
	}
	if w, h, err := parseResolution("641x481"); err != nil || w != 640 || h != 480 {
		t.Errorf("parseResolution(641x481) = %d, %d, %v", w, h, err)
	}
}
