// Package fakepublisher makes real media with FFmpeg (lavfi sources encoded
// to VP8 IVF, H.264 Annex-B and Opus Ogg), reads it back with pion's media
// readers and packetizes it into RTP with pion's payloaders, as a WebRTC
// publisher would send it: timed on a simulated wall clock, with some loss,
// reordering and duplication. Tests of the recorder feed it to capture.
package fakepublisher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/chorus-rtc/chorus/recorder/capture"
)

// RequireFFmpeg skips the test when ffmpeg or ffprobe is not on PATH.
func RequireFFmpeg(tb testing.TB) {
	tb.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("%s not found on PATH (Debian: apt-get install ffmpeg): %v", tool, err)
		}
	}
}

// Source describes the media of one simulated publisher.
type Source struct {
	// Video is a lavfi video source, e.g. "testsrc=size=320x240:rate=30";
	// its rate must be FrameRate. Empty: no video.
	Video      string
	VideoCodec capture.Codec // capture.CodecVP8 or capture.CodecH264
	FrameRate  int
	// GOP is the keyframe interval in frames (default FrameRate: 1 s).
	GOP int
	// AudioHz is the frequency of a sine tone; 0: no audio.
	AudioHz  int
	Duration time.Duration
}

// Kind tells audio from video packets.
type Kind int

// Packet kinds.
const (
	Video Kind = iota
	Audio
)

// Packet is one RTP packet as the recorder receives it.
type Packet struct {
	Kind   Kind
	Packet *rtp.Packet
	// At is the arrival time on the simulated wall clock.
	At time.Time
	// MediaTime is the capture time of the packet's media since the start.
	MediaTime time.Duration
	// Keyframe marks the packets of a video keyframe.
	Keyframe bool
}

// Impairment is what the network does to the packets. Probabilities are per
// packet; Seed makes it reproducible. Keyframes are never lost: a real
// publisher would answer the recorder's keyframe request, which this one
// cannot.
type Impairment struct {
	Loss, Reorder, Duplicate float64
	// Jitter is the largest extra delay of a packet.
	Jitter time.Duration
	Seed   uint64
}

// Make encodes src with FFmpeg into dir and returns its RTP packets ordered
// by arrival, the media being captured from start on (simulated wall
// clock). It fails with FFmpeg's output when an encode fails.
func Make(ctx context.Context, dir string, src Source, start time.Time, imp Impairment) ([]Packet, error) {
	if src.GOP == 0 {
		src.GOP = src.FrameRate
	}
	var packets []Packet
	if src.Video != "" {
		v, err := makeVideo(ctx, dir, src, start)
		if err != nil {
			return nil, err
		}
		packets = append(packets, v...)
	}
	if src.AudioHz > 0 {
		a, err := makeAudio(ctx, dir, src, start)
		if err != nil {
			return nil, err
		}
		packets = append(packets, a...)
	}
	return impair(packets, imp), nil
}

func ffmpeg(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ffmpeg", append([]string{"-hide_banner", "-nostdin", "-loglevel", "error", "-y"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ffmpeg %v: %w: %s", args, err, stderr.String())
	}
	return nil
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

func makeVideo(ctx context.Context, dir string, src Source, start time.Time) ([]Packet, error) {
	gop := strconv.Itoa(src.GOP)
	common := []string{"-f", "lavfi", "-i", src.Video, "-t", seconds(src.Duration), "-threads", "1", "-g", gop, "-keyint_min", gop}
	var frames [][]byte
	var isKey func([]byte) bool
	var payloader rtp.Payloader
	switch src.VideoCodec {
	case capture.CodecVP8:
		file := filepath.Join(dir, "src.ivf")
		args := append(common, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k",
			"-auto-alt-ref", "0", "-lag-in-frames", "0", "-f", "ivf", file)
		if err := ffmpeg(ctx, args...); err != nil {
			return nil, err
		}
		var err error
		if frames, err = readIVF(file); err != nil {
			return nil, err
		}
		payloader = &codecs.VP8Payloader{EnablePictureID: true}
		isKey = func(f []byte) bool { return f[0]&0x01 == 0 }
	case capture.CodecH264:
		file := filepath.Join(dir, "src.h264")
		args := append(common, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
			"-pix_fmt", "yuv420p", "-b:v", "400k", "-bsf:v", "h264_mp4toannexb", "-f", "h264", file)
		if err := ffmpeg(ctx, args...); err != nil {
			return nil, err
		}
		var err error
		if frames, err = readH264(file); err != nil {
			return nil, err
		}
		payloader = &codecs.H264Payloader{}
		isKey = func(f []byte) bool { return bytes.Contains(f, []byte{0, 0, 0, 1, 0x65}) }
	default:
		return nil, fmt.Errorf("video codec %q", src.VideoCodec)
	}
	// Timestamps and sequence numbers start near their wrap, as a publisher's
	// random ones may.
	p := rtp.NewPacketizerWithOptions(1200, payloader, rtp.NewFixedSequencer(65500), 90000,
		rtp.WithPayloadType(96), rtp.WithSSRC(0x1111), rtp.WithTimestamp(0xffff0000))
	step := uint32(90000 / src.FrameRate)
	var out []Packet
	for i, f := range frames {
		mt := time.Duration(i) * time.Second / time.Duration(src.FrameRate)
		for _, pkt := range p.Packetize(f, step) {
			out = append(out, Packet{Kind: Video, Packet: pkt, At: start.Add(mt), MediaTime: mt, Keyframe: isKey(f)})
		}
	}
	return out, nil
}

func readIVF(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var frames [][]byte
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		frames = append(frames, frame)
	}
}

// readH264 returns the access units of an Annex-B stream with one slice per
// picture (x264 with one thread): parameter sets and SEI go with the next
// picture.
func readH264(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := h264reader.NewReaderWithOptions(f, h264reader.WithIncludeSEI(true))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var units [][]byte
	var cur []byte
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			return units, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal.Data...)
		if t := nal.UnitType; t == h264reader.NalUnitTypeCodedSliceNonIdr || t == h264reader.NalUnitTypeCodedSliceIdr {
			units = append(units, cur)
			cur = nil
		}
	}
}

func makeAudio(ctx context.Context, dir string, src Source, start time.Time) ([]Packet, error) {
	file := filepath.Join(dir, "src.ogg")
	err := ffmpeg(ctx, "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=48000", src.AudioHz),
		"-t", seconds(src.Duration), "-ac", "2", "-c:a", "libopus", "-b:a", "32k", "-frame_duration", "20",
		"-page_duration", "20000", "-f", "ogg", file)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	p := rtp.NewPacketizerWithOptions(1200, &codecs.OpusPayloader{}, rtp.NewRandomSequencer(), 48000,
		rtp.WithPayloadType(111), rtp.WithSSRC(0x2222), rtp.WithTimestamp(0x7fff0000))
	var out []Packet
	var granule uint64
	n := 0
	for {
		payload, hdr, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		if bytes.HasPrefix(payload, []byte("OpusTags")) || len(payload) == 0 {
			continue
		}
		// One 20 ms packet per page (-page_duration 20000); the last one may
		// be trimmed.
		if granule != 0 && hdr.GranulePosition-granule > 960 {
			return nil, fmt.Errorf("read %s: page of %d samples, want one 20 ms packet", file, hdr.GranulePosition-granule)
		}
		granule = hdr.GranulePosition
		mt := time.Duration(n) * 20 * time.Millisecond
		for _, pkt := range p.Packetize(payload, 960) {
			out = append(out, Packet{Kind: Audio, Packet: pkt, At: start.Add(mt), MediaTime: mt})
		}
		n++
	}
}

// impair applies imp and orders the packets by arrival. The first packets
// of each kind (the first half second) arrive intact, so that the first
// keyframe is whole.
func impair(in []Packet, imp Impairment) []Packet {
	rng := rand.New(rand.NewPCG(imp.Seed, imp.Seed^0x9e3779b97f4a7c15))
	var out []Packet
	for _, p := range in {
		protected := p.MediaTime < 500*time.Millisecond
		if !protected && !p.Keyframe && rng.Float64() < imp.Loss {
			continue
		}
		if imp.Jitter > 0 {
			p.At = p.At.Add(time.Duration(rng.Int64N(int64(imp.Jitter))))
		}
		if !protected && rng.Float64() < imp.Reorder {
			p.At = p.At.Add(imp.Jitter + 30*time.Millisecond)
		}
		out = append(out, p)
		if !protected && rng.Float64() < imp.Duplicate {
			d := p
			d.Packet = p.Packet.Clone()
			d.At = p.At.Add(5 * time.Millisecond)
			out = append(out, d)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Between returns the packets that arrived in [from, to).
func Between(packets []Packet, from, to time.Time) []Packet {
	var out []Packet
	for _, p := range packets {
		if !p.At.Before(from) && p.At.Before(to) {
			out = append(out, p)
		}
	}
	return out
}

// Continue renumbers next's packets so that their sequence numbers,
// timestamps and SSRC continue prev's, kind by kind, as if one publisher
// had sent both (an encoder that changed resolution, say); prev's packets
// must come first in time. It returns prev followed by next.
func Continue(prev, next []Packet) []Packet {
	type state struct {
		seq  uint16
		ts   uint32
		ssrc uint32
		ok   bool
	}
	last := map[Kind]*state{Video: {}, Audio: {}}
	for _, p := range prev {
		s := last[p.Kind]
		if !s.ok || int16(p.Packet.SequenceNumber-s.seq) > 0 {
			s.seq, s.ts, s.ssrc, s.ok = p.Packet.SequenceNumber, p.Packet.Timestamp, p.Packet.SSRC, true
		}
	}
	first := map[Kind]*state{Video: {}, Audio: {}}
	for _, p := range next {
		s := first[p.Kind]
		if !s.ok || int16(p.Packet.SequenceNumber-s.seq) < 0 {
			s.seq, s.ts, s.ok = p.Packet.SequenceNumber, p.Packet.Timestamp, true
		}
	}
	out := append([]Packet{}, prev...)
	for _, p := range next {
		l, f := last[p.Kind], first[p.Kind]
		if !l.ok {
			out = append(out, p)
			continue
		}
		step := uint32(3000) // one 30 fps frame
		if p.Kind == Audio {
			step = 960
		}
		q := p
		q.Packet = p.Packet.Clone()
		q.Packet.SequenceNumber = l.seq + 1 + (p.Packet.SequenceNumber - f.seq)
		q.Packet.Timestamp = l.ts + step + (p.Packet.Timestamp - f.ts)
		q.Packet.SSRC = l.ssrc
		out = append(out, q)
	}
	return out
}
