// Package probe inspects media files with ffprobe and decodes frames with
// ffmpeg, for the recorder's tests.
package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Stream is one stream as ffprobe reports it.
type Stream struct {
	Index      int    `json:"index"`
	CodecType  string `json:"codec_type"`
	CodecName  string `json:"codec_name"`
	Width      int    `json:"width"`
	Height     int    `json:"height"`
	RFrameRate string `json:"r_frame_rate"`
	AvgRate    string `json:"avg_frame_rate"`
	Channels   int    `json:"channels"`
	SampleRate string `json:"sample_rate"`
	Duration   string `json:"duration"`
	StartTime  string `json:"start_time"`
}

// Result is a file's format and streams.
type Result struct {
	Streams []Stream `json:"streams"`
	Format  struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
		StartTime  string `json:"start_time"`
	} `json:"format"`
}

// Duration is the container's duration.
func (r Result) Duration() time.Duration { return parseSeconds(r.Format.Duration) }

// Kind returns the first stream of codec_type kind ("video", "audio") and
// whether there is one.
func (r Result) Kind(kind string) (Stream, bool) {
	for _, s := range r.Streams {
		if s.CodecType == kind {
			return s, true
		}
	}
	return Stream{}, false
}

// FrameRate is r_frame_rate as a number.
func (s Stream) FrameRate() float64 {
	num, den, ok := strings.Cut(s.RFrameRate, "/")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseFloat(num, 64)
	d, _ := strconv.ParseFloat(den, 64)
	if d == 0 {
		return 0
	}
	return n / d
}

func parseSeconds(s string) time.Duration {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// File runs ffprobe on file.
func File(ctx context.Context, file string) (Result, error) {
	out, err := run(ctx, "ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", file)
	if err != nil {
		return Result{}, err
	}
	var r Result
	if err := json.Unmarshal(out, &r); err != nil {
		return Result{}, fmt.Errorf("ffprobe %s: %w", file, err)
	}
	return r, nil
}

// PacketSpan returns the time from the first packet's start to the last
// packet's end of the first stream of codec_type kind, and the number of
// packets: the media a file really holds, whatever its header says.
func PacketSpan(ctx context.Context, file, kind string) (first, end time.Duration, n int, err error) {
	sel := "v:0"
	if kind == "audio" {
		sel = "a:0"
	}
	out, err := run(ctx, "ffprobe", "-v", "error", "-select_streams", sel,
		"-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0", file)
	if err != nil {
		return 0, 0, 0, err
	}
	firstSet := false
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pts, dur, _ := strings.Cut(strings.TrimSpace(line), ",")
		if pts == "" || pts == "N/A" {
			continue
		}
		t := parseSeconds(pts)
		d := parseSeconds(strings.TrimSuffix(dur, ","))
		if !firstSet || t < first {
			first, firstSet = t, true
		}
		if t+d > end {
			end = t + d
		}
		n++
	}
	return first, end, n, nil
}

// Decode decodes the whole file and returns ffmpeg's error output (empty
// when the streams decode cleanly).
func Decode(ctx context.Context, file string) (string, error) {
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", file, "-f", "null", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stderr.String(), fmt.Errorf("decode %s: %w: %s", file, err, stderr.String())
	}
	return stderr.String(), nil
}

// Frame is a decoded picture in packed RGB24.
type Frame struct {
	Width, Height int
	Pix           []byte
}

// RGB returns the pixel at (x, y).
func (f Frame) RGB(x, y int) (r, g, b byte) {
	i := (y*f.Width + x) * 3
	return f.Pix[i], f.Pix[i+1], f.Pix[i+2]
}

// Lit returns the share of pixels of the rectangle [x0,x1)×[y0,y1) whose
// brightest channel exceeds 40 (not black).
func (f Frame) Lit(x0, y0, x1, y1 int) float64 {
	lit, total := 0, 0
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			r, g, b := f.RGB(x, y)
			if max(r, g, b) > 40 {
				lit++
			}
			total++
		}
	}
	if total == 0 {
		return 0
	}
	return float64(lit) / float64(total)
}

// Blue returns the share of pixels of the rectangle that are the tests'
// blue (0x2050d0, give or take the encoding).
func (f Frame) Blue(x0, y0, x1, y1 int) float64 {
	blue, total := 0, 0
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			r, g, b := f.RGB(x, y)
			if r < 70 && g > 50 && g < 120 && b > 170 {
				blue++
			}
			total++
		}
	}
	if total == 0 {
		return 0
	}
	return float64(blue) / float64(total)
}

// Interval is a stretch of a file's timeline.
type Interval struct{ Start, End time.Duration }

// Silences returns the stretches of the first audio stream quieter than
// -40 dB for at least minDur; missing audio (a gap in the timestamps) counts
// as silence. An open silence at the end ends at the file's end.
func Silences(ctx context.Context, file string, minDur time.Duration) ([]Interval, error) {
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-v", "info", "-i", file, "-map", "0:a:0",
		"-af", fmt.Sprintf("aresample=async=1:first_pts=0,silencedetect=noise=-40dB:d=%.3f", minDur.Seconds()), "-f", "null", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("silencedetect %s: %w: %s", file, err, stderr.String())
	}
	var out []Interval
	for _, line := range strings.Split(stderr.String(), "\n") {
		if _, v, ok := strings.Cut(line, "silence_start: "); ok {
			out = append(out, Interval{Start: parseSeconds(strings.Fields(v)[0]), End: -1})
		}
		if _, v, ok := strings.Cut(line, "silence_end: "); ok && len(out) > 0 {
			out[len(out)-1].End = parseSeconds(strings.Fields(v)[0])
		}
	}
	if n := len(out); n > 0 && out[n-1].End < 0 {
		r, err := File(ctx, file)
		if err != nil {
			return nil, err
		}
		out[n-1].End = r.Duration()
	}
	return out, nil
}

// ToneLevel returns the RMS level (dB) of the first audio stream between
// from and to, through a narrow band-pass around hz.
func ToneLevel(ctx context.Context, file string, hz int, from, to time.Duration) (float64, error) {
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-v", "info", "-i", file, "-map", "0:a:0",
		"-af", fmt.Sprintf("atrim=%.3f:%.3f,bandpass=f=%d:width_type=q:w=8,astats=metadata=0", from.Seconds(), to.Seconds(), hz),
		"-f", "null", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("astats %s: %w: %s", file, err, stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if _, v, ok := strings.Cut(line, "RMS level dB: "); ok {
			if v = strings.TrimSpace(v); v == "-inf" {
				return -200, nil
			}
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("astats %s: no RMS level in %s", file, stderr.String())
}

// PacketTimes returns the presentation times of the first stream of
// codec_type kind's packets, in file order.
func PacketTimes(ctx context.Context, file, kind string) ([]time.Duration, error) {
	sel := "v:0"
	if kind == "audio" {
		sel = "a:0"
	}
	out, err := run(ctx, "ffprobe", "-v", "error", "-select_streams", sel, "-show_entries", "packet=pts_time", "-of", "csv=p=0", file)
	if err != nil {
		return nil, err
	}
	var times []time.Duration
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if v := strings.Trim(strings.TrimSpace(line), ","); v != "" && v != "N/A" {
			times = append(times, parseSeconds(v))
		}
	}
	return times, nil
}

// FrameAt decodes the video frame shown at time at, of size width×height
// (the file's video size).
func FrameAt(ctx context.Context, file string, at time.Duration, width, height int) (Frame, error) {
	out, err := run(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-ss", strconv.FormatFloat(at.Seconds(), 'f', 3, 64),
		"-i", file, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
	if err != nil {
		return Frame{}, err
	}
	if len(out) != width*height*3 {
		return Frame{}, fmt.Errorf("frame of %s at %v: %d bytes, want %dx%dx3", file, at, len(out), width, height)
	}
	return Frame{Width: width, Height: height, Pix: out}, nil
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %v: %w: %s", name, args, err, stderr.String())
	}
	return stdout.Bytes(), nil
}
