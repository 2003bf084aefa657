package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Errors of this package, wrapped with details. FFmpeg failures are
// *FFmpegError.
var (
	// ErrConfig: the Config is invalid.
	ErrConfig = errors.New("render: invalid configuration")
	// ErrRecording: the Recording is invalid or not supported.
	ErrRecording = errors.New("render: invalid recording")
	// ErrSegments: the working directory holds unusable segments.
	ErrSegments = errors.New("render: unusable segments")
)

// OutputMode is OpenVidu's Recording.outputMode.
type OutputMode string

// OpenVidu's output modes; COMPOSED_QUICK_START gives the same file as
// COMPOSED (OpenVidu's recording docs, "Composed quick start recording").
const (
	Composed           OutputMode = "COMPOSED"
	ComposedQuickStart OutputMode = "COMPOSED_QUICK_START"
	Individual         OutputMode = "INDIVIDUAL"
)

// BestFit is the only recording layout rendered (OpenVidu's default).
const BestFit = "BEST_FIT"

// Recording is what render needs of OpenVidu's Recording object (REST API
// docs, "The Recording object").
type Recording struct {
	// ID is the recording id; the thumbnail is named after it.
	ID string
	// Name names the output file (default ID): one path element.
	Name      string
	SessionID string
	// OutputMode defaults to COMPOSED.
	OutputMode OutputMode
	// HasAudio and HasVideo: at least one.
	HasAudio, HasVideo bool
	// RecordingLayout is "" or BEST_FIT (COMPOSED with video).
	RecordingLayout string
	// Resolution is "WIDTHxHEIGHT", each 100 to 1999 (default "1280x720"),
	// FrameRate 1 to 120 (default 25): COMPOSED with video. An odd width or
	// height is rendered one pixel smaller (H.264 4:2:0 needs even sizes).
	Resolution string
	FrameRate  int
	// CreatedAt is when the recording started (OpenVidu's createdAt),
	// StoppedAt when it stopped: the output covers [CreatedAt, StoppedAt).
	CreatedAt, StoppedAt time.Time
}

// Result describes what Render wrote.
type Result struct {
	// File is the output: <Name>.mp4 (COMPOSED with video), <Name>.webm
	// (COMPOSED audio-only) or <Name>.zip (INDIVIDUAL), in the output
	// directory.
	File string
	Size int64
	// Duration is StoppedAt - CreatedAt, what OpenVidu reports (the
	// COMPOSED file lasts that long).
	Duration time.Duration
	// Thumbnail is <ID>.jpg beside File (COMPOSED with video), else "".
	Thumbnail string
	// Sync is the INDIVIDUAL sync file's content (nil for COMPOSED).
	Sync *SyncFile
	// CPU is the user + system CPU time of the FFmpeg processes.
	CPU time.Duration
	// Gaps are the stretches, within a take, where a stream's media is
	// missing for longer than GapThreshold (a crash between segments).
	Gaps []Gap
}

// Gap is a stretch of a stream missing between two segments of a take,
// from the recording's CreatedAt.
type Gap struct {
	StreamID   string
	Start, End time.Duration
}

// GapThreshold is the shortest missing stretch Result.Gaps reports: below
// it, a new segment is a renegotiation, not an outage.
const GapThreshold = 500 * time.Millisecond

// Config configures a Renderer. Zero values take the defaults given.
type Config struct {
	// FFmpeg is the ffmpeg binary (default "ffmpeg" on PATH); Debian's 5.1
	// has every encoder needed (libx264, aac, libopus).
	FFmpeg string
	// TempDir holds the intermediate files of a render, removed when it
	// returns (default os.TempDir()).
	TempDir string
	// Preset and CRF tune libx264 (default "veryfast" and 23).
	Preset string
	CRF    int
	// AudioBitrate is the COMPOSED audio bitrate in bit/s; 0: 128000 for
	// AAC (MP4), 64000 for Opus (audio-only WebM).
	AudioBitrate int
	// Threads caps the threads of FFmpeg's encoders and filter graph (0:
	// FFmpeg's choice, one per core).
	Threads int
	// StderrTail is how much of FFmpeg's error output an FFmpegError keeps
	// (default 4096 bytes).
	StderrTail int
}

// Renderer turns a recording's segments into OpenVidu's output files.
type Renderer struct {
	cfg Config
}

// New returns a Renderer; it fails with ErrConfig when FFmpeg cannot be
// found.
func New(cfg Config) (*Renderer, error) {
	if cfg.FFmpeg == "" {
		cfg.FFmpeg = "ffmpeg"
	}
	path, err := exec.LookPath(cfg.FFmpeg)
	if err != nil {
		return nil, fmt.Errorf("%w: ffmpeg %q: %w", ErrConfig, cfg.FFmpeg, err)
	}
	cfg.FFmpeg = path
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if cfg.Preset == "" {
		cfg.Preset = "veryfast"
	}
	if cfg.CRF == 0 {
		cfg.CRF = 23
	}
	if cfg.StderrTail <= 0 {
		cfg.StderrTail = 4096
	}
	return &Renderer{cfg: cfg}, nil
}

// Render reads the segments of rec in workDir (capture's layout) and writes
// rec's output into outDir (created if missing). Outputs appear complete or
// not at all (written under a temporary name, then renamed); intermediate
// files are removed, whatever happens. Cancelling ctx kills FFmpeg. It
// fails with ErrRecording for an invalid rec, ErrSegments for unusable
// segments, or an *FFmpegError.
func (r *Renderer) Render(ctx context.Context, rec Recording, workDir, outDir string) (Result, error) {
	rec, err := normalize(rec)
	if err != nil {
		return Result{}, err
	}
	takes, err := loadTakes(workDir, rec)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("render: output directory: %w", err)
	}
	tmp, err := os.MkdirTemp(r.cfg.TempDir, "chorus-render-")
	if err != nil {
		return Result{}, fmt.Errorf("render: temporary directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	run := &runner{ffmpeg: r.cfg.FFmpeg, tail: r.cfg.StderrTail}
	var res Result
	if rec.OutputMode == Individual {
		res, err = r.individual(ctx, run, rec, takes, tmp, outDir)
	} else {
		res, err = r.composed(ctx, run, rec, takes, tmp, outDir)
	}
	res.CPU = run.cpuTime()
	if err != nil {
		return res, err
	}
	res.Duration = rec.StoppedAt.Sub(rec.CreatedAt)
	res.Gaps = takeGaps(takes)
	return res, nil
}

// takeGaps finds, in each take, the stretches between consecutive pieces of
// its video (of its audio without video) longer than GapThreshold.
func takeGaps(takes []*take) []Gap {
	var gaps []Gap
	for _, t := range takes {
		pieces := t.video
		if len(pieces) == 0 {
			pieces = t.audio
		}
		for i := 1; i < len(pieces); i++ {
			prev, next := pieces[i-1], pieces[i]
			if next.start-prev.end > GapThreshold.Milliseconds() {
				gaps = append(gaps, Gap{StreamID: t.stream.StreamID,
					Start: time.Duration(prev.end) * time.Millisecond, End: time.Duration(next.start) * time.Millisecond})
			}
		}
	}
	return gaps
}

// normalize applies rec's defaults and checks it against OpenVidu's REST API
// bounds.
func normalize(rec Recording) (Recording, error) {
	bad := func(format string, args ...any) (Recording, error) {
		return Recording{}, fmt.Errorf("%w: %s", ErrRecording, fmt.Sprintf(format, args...))
	}
	if rec.ID == "" {
		return bad("no id")
	}
	if rec.Name == "" {
		rec.Name = rec.ID
	}
	for _, name := range []string{rec.ID, rec.Name} {
		if name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
			return bad("%q cannot name a file", name)
		}
	}
	if !rec.HasAudio && !rec.HasVideo {
		return bad("neither audio nor video")
	}
	if !rec.StoppedAt.After(rec.CreatedAt) {
		return bad("stopped at %v, not after its start %v", rec.StoppedAt, rec.CreatedAt)
	}
	switch rec.OutputMode {
	case "":
		rec.OutputMode = Composed
	case Composed, ComposedQuickStart, Individual:
	default:
		return bad("output mode %q", rec.OutputMode)
	}
	if rec.OutputMode == Individual || !rec.HasVideo {
		return rec, nil
	}
	if rec.RecordingLayout != "" && rec.RecordingLayout != BestFit {
		return bad("recording layout %q (only %s is rendered)", rec.RecordingLayout, BestFit)
	}
	if rec.Resolution == "" {
		rec.Resolution = "1280x720"
	}
	if _, _, err := parseResolution(rec.Resolution); err != nil {
		return bad("%v", err)
	}
	if rec.FrameRate == 0 {
		rec.FrameRate = 25
	}
	if rec.FrameRate < 1 || rec.FrameRate > 120 {
		return bad("frame rate %d (1 to 120)", rec.FrameRate)
	}
	return rec, nil
}

// parseResolution parses "WIDTHxHEIGHT" (each 100 to 1999) and rounds odd
// sizes down to even.
func parseResolution(s string) (width, height int, err error) {
	ws, hs, ok := strings.Cut(s, "x")
	if ok {
		width, err = strconv.Atoi(ws)
		if err == nil {
			height, err = strconv.Atoi(hs)
		}
	}
	if !ok || err != nil || width < 100 || width > 1999 || height < 100 || height > 1999 {
		return 0, 0, fmt.Errorf("resolution %q (WIDTHxHEIGHT, each 100 to 1999)", s)
	}
	return width &^ 1, height &^ 1, nil
}

// publish moves a finished temporary file to its final name in outDir.
func publish(tmpFile, outDir, name string) (string, int64, error) {
	final := filepath.Join(outDir, name)
	partial := filepath.Join(outDir, "."+name+".partial")
	if err := copyFile(tmpFile, partial); err != nil {
		_ = os.Remove(partial)
		return "", 0, fmt.Errorf("render: write %s: %w", final, err)
	}
	if err := os.Rename(partial, final); err != nil {
		_ = os.Remove(partial)
		return "", 0, fmt.Errorf("render: write %s: %w", final, err)
	}
	st, err := os.Stat(final)
	if err != nil {
		return "", 0, fmt.Errorf("render: write %s: %w", final, err)
	}
	return final, st.Size(), nil
}
