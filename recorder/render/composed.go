package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// lookback is how far before a layout change a tile's branch starts, in ms:
// the frame on screen when the layout changes may be older than the
// change (a screen share sends few frames).
const lookback = 2000

// interval is a stretch of the recording where the set of videos on screen
// does not change. Times are ms since CreatedAt.
type interval struct {
	start, end int64
	takes      []*take
}

// videoIntervals splits [0, duration) where a take with video appears or
// disappears. A take is on screen from its first video piece's start to its
// last one's end: a crash gap between two pieces keeps its tile, black.
func videoIntervals(takes []*take, duration int64) []interval {
	type span struct {
		t          *take
		start, end int64
	}
	var spans []span
	cuts := []int64{0, duration}
	for _, t := range takes {
		if len(t.video) == 0 {
			continue
		}
		s := span{t, max(t.video[0].start, 0), min(t.video[len(t.video)-1].end, duration)}
		if s.end <= s.start {
			continue
		}
		spans = append(spans, s)
		cuts = append(cuts, s.start, s.end)
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
	var out []interval
	for i := 0; i+1 < len(cuts); i++ {
		a, b := cuts[i], cuts[i+1]
		if a == b {
			continue
		}
		iv := interval{start: a, end: b}
		for _, s := range spans {
			if s.start <= a && s.end >= b {
				iv.takes = append(iv.takes, s.t)
			}
		}
		out = append(out, iv)
	}
	return out
}

// composedArgs returns FFmpeg's arguments for a COMPOSED recording and the
// filter graph (to be written to graphFile). The output lasts exactly
// StoppedAt - CreatedAt.
func composedArgs(rec Recording, cfg Config, takes []*take, graphFile, out string) (args []string, graph string) {
	duration := rec.StoppedAt.UnixMilli() - rec.CreatedAt.UnixMilli()
	var g strings.Builder
	inputs := 0
	if rec.HasVideo {
		var video []string
		video, inputs = videoGraph(&g, rec, takes, duration)
		args = append(args, video...)
	}
	if rec.HasAudio {
		args = append(args, audioGraph(&g, inputs, takes, duration)...)
	}
	graph = strings.TrimSuffix(strings.TrimSpace(g.String()), ";")
	if cfg.Threads > 0 {
		args = append(args, "-filter_complex_threads", strconv.Itoa(cfg.Threads))
	}
	args = append(args, "-filter_complex_script", graphFile)
	if rec.HasVideo {
		args = append(args, "-map", "[vout]", "-c:v", "libx264", "-preset", cfg.Preset, "-crf", strconv.Itoa(cfg.CRF),
			"-pix_fmt", "yuv420p", "-r", strconv.Itoa(rec.FrameRate))
	}
	if rec.HasAudio {
		bitrate := cfg.AudioBitrate
		codec := "aac"
		if !rec.HasVideo {
			codec = "libopus"
			if bitrate == 0 {
				bitrate = 64000
			}
		} else if bitrate == 0 {
			bitrate = 128000
		}
		args = append(args, "-map", "[aout]", "-c:a", codec, "-b:a", strconv.Itoa(bitrate))
	}
	if cfg.Threads > 0 {
		args = append(args, "-threads", strconv.Itoa(cfg.Threads))
	}
	args = append(args, "-t", seconds(duration))
	if rec.HasVideo {
		args = append(args, "-movflags", "+faststart", "-f", "mp4", out)
	} else {
		args = append(args, "-f", "webm", out)
	}
	return args, graph
}

// videoGraph writes the video part of the filter graph and returns the
// arguments of its inputs (from input 0) and their number: every video piece is an input
// placed at its time (setpts), split into one branch per interval it is on
// screen in, each branch trimmed to its interval, scaled to its tile and
// overlaid on a black picture at the recording's size and rate, for that
// interval only. The result is [vout].
func videoGraph(g *strings.Builder, rec Recording, takes []*take, duration int64) (args []string, inputs int) {
	width, height, _ := parseResolution(rec.Resolution)
	fmt.Fprintf(g, "color=c=black:s=%dx%d:r=%d:d=%s,format=yuv420p[bg0];\n", width, height, rec.FrameRate, seconds(duration))
	type branch struct {
		tile         Tile
		from, to     int64 // frames kept (ms)
		onFrom, onTo int64 // drawn (ms)
		label        string
	}
	branches := map[*piece][]*branch{}
	var order []*piece
	var draws []*branch
	for _, iv := range videoIntervals(takes, duration) {
		tiles := BestFitLayout(len(iv.takes), width, height)
		for i, t := range iv.takes {
			for _, p := range t.video {
				onFrom, onTo := max(iv.start, p.start), min(iv.end, p.end)
				if onTo <= onFrom {
					continue
				}
				b := &branch{tile: tiles[i], from: max(p.start, iv.start-lookback), to: onTo, onFrom: onFrom, onTo: onTo}
				if branches[p] == nil {
					order = append(order, p)
				}
				branches[p] = append(branches[p], b)
				draws = append(draws, b)
			}
		}
	}
	for input, p := range order {
		args = append(args, "-reinit_filter", "0", "-i", p.file)
		bs := branches[p]
		fmt.Fprintf(g, "[%d:v]setpts=PTS-STARTPTS+%s/TB,split=%d", input, seconds(p.start), len(bs))
		for j, b := range bs {
			b.label = fmt.Sprintf("v%d_%d", input, j)
			fmt.Fprintf(g, "[%s]", b.label)
		}
		g.WriteString(";\n")
		for _, b := range bs {
			t := b.tile
			fmt.Fprintf(g, "[%s]trim=start=%s:end=%s,scale=%d:%d:force_original_aspect_ratio=increase,crop=%d:%d,setsar=1[%s_t];\n",
				b.label, seconds(b.from), seconds(b.to), t.W, t.H, t.W, t.H, b.label)
		}
	}
	for i, b := range draws {
		next := fmt.Sprintf("bg%d", i+1)
		if i == len(draws)-1 {
			next = "vout"
		}
		fmt.Fprintf(g, "[bg%d][%s_t]overlay=x=%d:y=%d:eof_action=pass:enable='gte(t,%s)*lt(t,%s)'[%s];\n",
			i, b.label, b.tile.X, b.tile.Y, seconds(b.onFrom), seconds(b.onTo), next)
	}
	if len(draws) == 0 {
		g.WriteString("[bg0]null[vout];\n")
	}
	return args, len(order)
}

// audioGraph writes the audio part of the filter graph and returns the
// arguments of its inputs (numbered from first): every audio piece is trimmed to its place on
// the recording's timeline, delayed to its start and mixed with silence as
// long as the recording (amix, not normalized). The result is [aout].
func audioGraph(g *strings.Builder, first int, takes []*take, duration int64) (args []string) {
	samples := func(ms int64) int64 { return ms * 48 } // 48 kHz
	fmt.Fprintf(g, "anullsrc=r=48000:cl=stereo,atrim=end_sample=%d[silence];\n", samples(duration))
	var mixed []string
	input := first
	for _, t := range takes {
		for _, p := range t.audio {
			// Decoded sample 0 is the first packet's sample preSkip.
			zero := p.start + p.preSkip*1000/48000
			from, to := max(zero, 0), p.end
			if to <= from {
				continue
			}
			args = append(args, "-i", p.file)
			label := fmt.Sprintf("a%d", input)
			fmt.Fprintf(g, "[%d:a]aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo,"+
				"atrim=start_sample=%d:end_sample=%d,asetpts=N/SR/TB,adelay=delays=%dS:all=1[%s];\n",
				input, samples(from-zero), samples(to-zero), samples(from), label)
			mixed = append(mixed, label)
			input++
		}
	}
	g.WriteString("[silence]")
	for _, l := range mixed {
		fmt.Fprintf(g, "[%s]", l)
	}
	fmt.Fprintf(g, "amix=inputs=%d:duration=first:dropout_transition=0:normalize=0[aout]\n", len(mixed)+1)
	return args
}

// composed renders a COMPOSED (or COMPOSED_QUICK_START) recording: an MP4
// (H.264 + AAC; no audio for video-only) and its thumbnail, or a WebM
// (Opus) when audio-only (OpenVidu's recording docs, "Audio-only and
// video-only recordings").
func (r *Renderer) composed(ctx context.Context, run *runner, rec Recording, takes []*take, tmp, outDir string) (Result, error) {
	if rec.HasVideo {
		if err := prepareH264(takes, tmp); err != nil {
			return Result{}, err
		}
	}
	ext := ".mp4"
	if !rec.HasVideo {
		ext = ".webm"
	}
	out := filepath.Join(tmp, "composed"+ext)
	graphFile := filepath.Join(tmp, "composed.graph")
	args, graph := composedArgs(rec, r.cfg, takes, graphFile, out)
	if err := os.WriteFile(graphFile, []byte(graph), 0o644); err != nil {
		return Result{}, fmt.Errorf("render: write filter graph: %w", err)
	}
	if err := run.run(ctx, "composed "+rec.ID, args...); err != nil {
		return Result{}, err
	}
	var res Result
	thumb := filepath.Join(tmp, "thumbnail.jpg")
	if rec.HasVideo {
		// The thumbnail: a frame from the middle (OpenVidu's recording docs,
		// "Composed recording").
		mid := (rec.StoppedAt.UnixMilli() - rec.CreatedAt.UnixMilli()) / 2
		if err := run.run(ctx, "thumbnail "+rec.ID, "-ss", seconds(mid), "-i", out, "-frames:v", "1", "-q:v", "3", thumb); err != nil {
			return Result{}, err
		}
	}
	var err error
	if res.File, res.Size, err = publish(out, outDir, rec.Name+ext); err != nil {
		return Result{}, err
	}
	if rec.HasVideo {
		if res.Thumbnail, _, err = publish(thumb, outDir, rec.ID+".jpg"); err != nil {
			return Result{}, errors.Join(err, os.Remove(res.File))
		}
	}
	return res, nil
}
