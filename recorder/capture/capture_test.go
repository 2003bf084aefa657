package capture_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"

	"github.com/chorus-rtc/chorus/recorder/capture"
	"github.com/chorus-rtc/chorus/recorder/internal/fakepublisher"
	"github.com/chorus-rtc/chorus/recorder/internal/probe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the simulated wall clock's origin.
var t0 = time.UnixMilli(1_700_000_000_000)

func feed(t *testing.T, seg *capture.Segment, packets []fakepublisher.Packet) {
	t.Helper()
	for _, p := range packets {
		var err error
		if p.Kind == fakepublisher.Video {
			err = seg.WriteVideo(p.Packet, p.At)
		} else {
			err = seg.WriteAudio(p.Packet, p.At)
		}
		if err != nil {
			t.Fatalf("write packet at %v: %v", p.At.Sub(t0), err)
		}
	}
}

func near(t *testing.T, what string, got, want, tolerance int64) {
	t.Helper()
	if d := got - want; d > tolerance || d < -tolerance {
		t.Errorf("%s = %d, want %d ± %d", what, got, want, tolerance)
	}
}

func TestSegmentRecordsPlayableTracks(t *testing.T) {
	fakepublisher.RequireFFmpeg(t)
	const dur = 2 * time.Second
	cases := []struct {
		name      string
		codec     capture.Codec
		wantCodec string
		file      string
		imp       fakepublisher.Impairment
	}{
		{"vp8 clean", capture.CodecVP8, "vp8", capture.VideoVP8File, fakepublisher.Impairment{}},
		{"h264 clean", capture.CodecH264, "h264", capture.VideoH264File, fakepublisher.Impairment{}},
		{"vp8 lossy", capture.CodecVP8, "vp8", capture.VideoVP8File,
			fakepublisher.Impairment{Loss: 0.01, Reorder: 0.03, Duplicate: 0.02, Jitter: 20 * time.Millisecond, Seed: 1}},
		{"h264 lossy", capture.CodecH264, "h264", capture.VideoH264File,
			fakepublisher.Impairment{Loss: 0.01, Reorder: 0.03, Duplicate: 0.02, Jitter: 20 * time.Millisecond, Seed: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			packets, err := fakepublisher.Make(ctx, dir, fakepublisher.Source{
				Video: "testsrc=size=320x240:rate=30", VideoCodec: tc.codec, FrameRate: 30,
				AudioHz: 440, Duration: dur,
			}, t0, tc.imp)
			if err != nil {
				t.Fatal(err)
			}
			work := filepath.Join(dir, "work")
			seg, err := capture.Open(capture.Config{
				WorkDir: work, RecordingID: "ses_A", SegmentID: "s1",
				Stream: capture.Stream{StreamID: "str_CAM_A_con_A", ConnectionID: "con_A", HasAudio: true, HasVideo: true,
					TypeOfVideo: "CAMERA", VideoCodec: tc.codec},
			}, t0)
			if err != nil {
				t.Fatal(err)
			}
			feed(t, seg, packets)
			if err := seg.Close(t0.Add(dur + 100*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if err := seg.Close(t0); !errors.Is(err, capture.ErrClosed) {
				t.Errorf("second Close = %v, want ErrClosed", err)
			}

			found, err := capture.List(work)
			if err != nil || len(found) != 1 {
				t.Fatalf("List = %v, %v; want one segment", found, err)
			}
			m := found[0].Manifest
			if !m.Closed || m.Video == nil || m.Audio == nil {
				t.Fatalf("manifest %+v: want closed with both tracks", m)
			}
			// Media starts at t0 (jitter only delays) and lasts dur.
			near(t, "video startedAt", m.Video.StartedAt, t0.UnixMilli(), 5)
			near(t, "video endedAt", m.Video.EndedAt, t0.Add(dur).UnixMilli(), 40)
			near(t, "audio startedAt", m.Audio.StartedAt, t0.UnixMilli(), 5)
			near(t, "audio endedAt", m.Audio.EndedAt, t0.Add(dur).UnixMilli(), 25)
			near(t, "video rtpSpan", m.Video.RTPSpan, int64(dur/time.Second*90000)-3000, 0)
			if m.Video.FirstRTPTimestamp != 0xffff0000 {
				t.Errorf("first video RTP timestamp %#x, want the first keyframe's 0xffff0000", m.Video.FirstRTPTimestamp)
			}

			video := filepath.Join(found[0].Dir, tc.file)
			r, err := probe.File(ctx, video)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := r.Kind("video")
			if !ok || v.CodecName != tc.wantCodec || v.Width != 320 || v.Height != 240 {
				t.Errorf("video stream %+v, want %s 320x240", v, tc.wantCodec)
			}
			if tc.codec == capture.CodecVP8 {
				first, end, n, err := probe.PacketSpan(ctx, video, "video")
				if err != nil {
					t.Fatal(err)
				}
				if int64(n) != m.Video.Samples || first != 0 {
					t.Errorf("ivf: %d frames from %v, manifest %d samples", n, first, m.Video.Samples)
				}
				near(t, "ivf span ms", end.Milliseconds(), (dur - time.Second/30).Milliseconds(), 40)
			} else {
				lines := countLines(t, filepath.Join(found[0].Dir, capture.VideoH264Index))
				if int64(lines) != m.Video.Samples {
					t.Errorf("index has %d lines, manifest %d samples", lines, m.Video.Samples)
				}
			}
			if tc.imp.Loss == 0 && m.Video.Samples != int64(dur/time.Second*30) {
				t.Errorf("clean run wrote %d frames, want %d", m.Video.Samples, dur/time.Second*30)
			}
			first, end, _, err := probe.PacketSpan(ctx, filepath.Join(found[0].Dir, capture.AudioOpusFile), "audio")
			if err != nil {
				t.Fatal(err)
			}
			// Lost audio is concealed: the Ogg still spans the whole time
			// (from -80 ms: the pre-skip).
			near(t, "ogg end ms", (end - first).Milliseconds(), dur.Milliseconds(), 30)
			if _, err := probe.Decode(ctx, filepath.Join(found[0].Dir, capture.AudioOpusFile)); err != nil {
				t.Error(err)
			}
		})
	}
}

func countLines(t *testing.T, file string) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if strings.TrimSpace(sc.Text()) != "" {
			n++
		}
	}
	return n
}

// A segment opened in the middle of a GOP drops video until the next
// keyframe, asks for one meanwhile, and starts its time there; audio starts
// at once.
func TestSegmentStartsAtKeyframe(t *testing.T) {
	fakepublisher.RequireFFmpeg(t)
	ctx := context.Background()
	dir := t.TempDir()
	packets, err := fakepublisher.Make(ctx, dir, fakepublisher.Source{
		Video: "testsrc=size=160x120:rate=30", VideoCodec: capture.CodecVP8, FrameRate: 30, GOP: 60,
		AudioHz: 440, Duration: 3 * time.Second,
	}, t0, fakepublisher.Impairment{})
	if err != nil {
		t.Fatal(err)
	}
	requests := 0
	seg, err := capture.Open(capture.Config{
		WorkDir: filepath.Join(dir, "work"), RecordingID: "ses_A",
		Stream:          capture.Stream{StreamID: "str_A", HasAudio: true, HasVideo: true, VideoCodec: capture.CodecVP8},
		RequestKeyframe: func() { requests++ },
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	from := t0.Add(500 * time.Millisecond) // keyframes at 0 s and 2 s
	feed(t, seg, fakepublisher.Between(packets, from, t0.Add(3*time.Second)))
	if seg.NeedsKeyframe() {
		t.Error("NeedsKeyframe after the keyframe at 2 s")
	}
	if err := seg.Close(t0.Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	m := seg.Manifest()
	near(t, "video startedAt", m.Video.StartedAt, t0.Add(2*time.Second).UnixMilli(), 2)
	near(t, "audio startedAt", m.Audio.StartedAt, from.UnixMilli(), 2)
	if m.Video.Dropped != 45 || m.Video.Samples != 30 {
		t.Errorf("video dropped %d, wrote %d frames; want 45 and 30", m.Video.Dropped, m.Video.Samples)
	}
	// 1.5 s of waiting, a request every 500 ms.
	if requests < 3 || requests > 4 {
		t.Errorf("%d keyframe requests, want 3 or 4", requests)
	}
}

// Audio lost for longer than the sample builder waits is concealed in the
// Ogg (its time stays RTP time); a crash (Abandon) leaves the manifest of
// the last checkpoint.
func TestSegmentConcealsAudioGapAndSurvivesAbandon(t *testing.T) {
	fakepublisher.RequireFFmpeg(t)
	ctx := context.Background()
	dir := t.TempDir()
	packets, err := fakepublisher.Make(ctx, dir, fakepublisher.Source{AudioHz: 300, Duration: 4 * time.Second}, t0,
		fakepublisher.Impairment{})
	if err != nil {
		t.Fatal(err)
	}
	seg, err := capture.Open(capture.Config{
		WorkDir: filepath.Join(dir, "work"), RecordingID: "ses_A",
		Stream:             capture.Stream{StreamID: "str_A", HasAudio: true},
		CheckpointInterval: 500 * time.Millisecond,
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := seg.WriteVideo(packets[0].Packet, t0); !errors.Is(err, capture.ErrNoTrack) {
		t.Errorf("WriteVideo on an audio-only stream = %v, want ErrNoTrack", err)
	}
	feed(t, seg, fakepublisher.Between(packets, t0, t0.Add(time.Second)))
	feed(t, seg, fakepublisher.Between(packets, t0.Add(2500*time.Millisecond), t0.Add(3700*time.Millisecond)))
	if err := seg.Abandon(); err != nil {
		t.Fatal(err)
	}
	m, err := capture.ReadManifest(seg.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if m.Closed {
		t.Error("abandoned segment is marked closed")
	}
	// The last checkpoint was at the first packet 500 ms after the previous
	// one: 3.5 s. The audio written by then lags by at most the sample
	// builder's wait (25 packets, 500 ms).
	near(t, "updatedAt", m.UpdatedAt, t0.Add(3500*time.Millisecond).UnixMilli(), 20)
	near(t, "audio endedAt", m.Audio.EndedAt, t0.Add(3250*time.Millisecond).UnixMilli(), 260)
	near(t, "concealed frames", m.Audio.Concealed, 75, 0)
	ogg := filepath.Join(seg.Dir(), capture.AudioOpusFile)
	first, end, _, err := probe.PacketSpan(ctx, ogg, "audio")
	if err != nil {
		t.Fatal(err)
	}
	// The file holds at least what the manifest says (3 s), at most what
	// arrived (3.7 s).
	if span := end - first; span.Milliseconds() < m.Audio.EndedAt-m.Audio.StartedAt || span > 3700*time.Millisecond {
		t.Errorf("ogg spans %v, manifest %d ms", span, m.Audio.EndedAt-m.Audio.StartedAt)
	}
	if out, err := probe.Decode(ctx, ogg); err != nil || out != "" {
		t.Errorf("decode: %v %s", err, out)
	}
}

func TestOpenRejectsInvalidConfig(t *testing.T) {
	dir := t.TempDir()
	good := capture.Config{WorkDir: dir, RecordingID: "r", SegmentID: "s", Stream: capture.Stream{StreamID: "str_A", HasAudio: true}}
	cases := []struct {
		name   string
		change func(*capture.Config)
	}{
		{"no work dir", func(c *capture.Config) { c.WorkDir = "" }},
		{"no recording", func(c *capture.Config) { c.RecordingID = "" }},
		{"no tracks", func(c *capture.Config) { c.Stream.HasAudio = false }},
		{"path in stream id", func(c *capture.Config) { c.Stream.StreamID = "../x" }},
		{"dot dot segment", func(c *capture.Config) { c.SegmentID = ".." }},
		{"negative take", func(c *capture.Config) { c.Take = -1 }},
		{"video without codec", func(c *capture.Config) { c.Stream.HasVideo = true }},
		{"unknown codec", func(c *capture.Config) { c.Stream.HasVideo, c.Stream.VideoCodec = true, "AV1" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.change(&cfg)
			if _, err := capture.Open(cfg, t0); !errors.Is(err, capture.ErrConfig) {
				t.Errorf("Open = %v, want ErrConfig", err)
			}
		})
	}
	seg, err := capture.Open(good, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := capture.Open(good, t0); err == nil {
		t.Error("a second segment with the same id opened")
	}
	if err := seg.Close(t0); err != nil {
		t.Fatal(err)
	}
	found, err := capture.List(dir)
	if err != nil || len(found) != 1 || found[0].Manifest.Audio != nil {
		t.Errorf("List = %+v, %v; want one segment without media", found, err)
	}
	if found, err := capture.List(filepath.Join(dir, "missing")); err != nil || len(found) != 0 {
		t.Errorf("List of a missing directory = %v, %v", found, err)
	}
}

// A lost packet makes the segment ask for a keyframe; padding packets
// (bandwidth probes without media) do not.
func TestSegmentAsksKeyframeAfterLossOnly(t *testing.T) {
	fakepublisher.RequireFFmpeg(t)
	ctx := context.Background()
	packets, err := fakepublisher.Make(ctx, t.TempDir(), fakepublisher.Source{
		Video: "testsrc=size=160x120:rate=30", VideoCodec: capture.CodecVP8, FrameRate: 30, GOP: 90, Duration: 3 * time.Second,
	}, t0, fakepublisher.Impairment{})
	if err != nil {
		t.Fatal(err)
	}
	// The first packet of the frame at 1 s.
	k := 0
	for packets[k].MediaTime < time.Second {
		k++
	}
	lossy := append(append([]fakepublisher.Packet{}, packets[:k]...), packets[k+1:]...)
	// Padding: an empty packet with the previous frame's timestamp, the
	// following packets renumbered after it.
	padding := packets[k]
	padding.Packet = &rtp.Packet{Header: packets[k-1].Packet.Header, Payload: nil}
	padding.Packet.SequenceNumber = packets[k].Packet.SequenceNumber
	padding.Packet.Marker = false
	padding.Packet.Padding, padding.Packet.PaddingSize = true, 200
	padded := append(append([]fakepublisher.Packet{}, packets[:k]...), padding)
	for _, p := range packets[k:] {
		q := p
		q.Packet = p.Packet.Clone()
		q.Packet.SequenceNumber++
		padded = append(padded, q)
	}
	for _, tc := range []struct {
		name     string
		packets  []fakepublisher.Packet
		requests int
		frames   int64
	}{
		// The builder gives up on the lost packet 0.5 s to 1 s later
		// (MaxDelay, twice).
		{"loss", lossy, 1, 89},
		{"padding", padded, 0, 90},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requests := 0
			seg, err := capture.Open(capture.Config{
				WorkDir: t.TempDir(), RecordingID: "ses_A",
				Stream:          capture.Stream{StreamID: "str_A", HasVideo: true, VideoCodec: capture.CodecVP8},
				RequestKeyframe: func() { requests++ },
			}, t0)
			if err != nil {
				t.Fatal(err)
			}
			feed(t, seg, tc.packets)
			if err := seg.Close(t0.Add(3 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if m := seg.Manifest(); requests != tc.requests || m.Video.Samples != tc.frames {
				t.Errorf("%d keyframe requests, %d frames; want %d and %d", requests, m.Video.Samples, tc.requests, tc.frames)
			}
		})
	}
}

// A sender's packets from another SSRC (the subscription's new peer
// connection after its media node crashed) end the segment, whichever way
// its random sequence numbers and timestamps lie from the old sender's:
// ErrDiscontinuity, nothing of them written (they were dropped as late, or
// moved the track's time by hours); the next segment takes them and places
// them on their own time.
func TestSegmentEndsAtANewSender(t *testing.T) {
	fakepublisher.RequireFFmpeg(t)
	packets, err := fakepublisher.Make(context.Background(), t.TempDir(), fakepublisher.Source{
		Video: "testsrc=size=160x120:rate=30", VideoCodec: capture.CodecVP8, FrameRate: 30, GOP: 30,
		AudioHz: 440, Duration: 2 * time.Second,
	}, t0, fakepublisher.Impairment{})
	if err != nil {
		t.Fatal(err)
	}
	cut := t0.Add(time.Second) // a keyframe
	for _, tc := range []struct {
		name string
		seq  uint16
		ts   uint32
	}{
		{"behind", 0x9000, 0x90000000},
		{"ahead", 0x1000, 0x10000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var next []fakepublisher.Packet
			for _, p := range fakepublisher.Between(packets, cut, t0.Add(2*time.Second)) {
				q := p
				q.Packet = p.Packet.Clone()
				q.Packet.SSRC += 0x100
				q.Packet.SequenceNumber += tc.seq
				q.Packet.Timestamp += tc.ts
				next = append(next, q)
			}
			stream := capture.Stream{StreamID: "str_A", HasAudio: true, HasVideo: true, VideoCodec: capture.CodecVP8}
			work := t.TempDir()
			first, err := capture.Open(capture.Config{WorkDir: work, RecordingID: "ses_A", Stream: stream}, t0)
			if err != nil {
				t.Fatal(err)
			}
			feed(t, first, fakepublisher.Between(packets, t0, cut))
			for _, p := range next[:10] { // both kinds
				var err error
				if p.Kind == fakepublisher.Video {
					err = first.WriteVideo(p.Packet, p.At)
				} else {
					err = first.WriteAudio(p.Packet, p.At)
				}
				if !errors.Is(err, capture.ErrDiscontinuity) {
					t.Fatalf("a packet of another SSRC: %v, want ErrDiscontinuity", err)
				}
			}
			if err := first.Close(cut); err != nil {
				t.Fatal(err)
			}
			second, err := capture.Open(capture.Config{WorkDir: work, RecordingID: "ses_A", Stream: stream}, cut)
			if err != nil {
				t.Fatal(err)
			}
			feed(t, second, next)
			if err := second.Close(t0.Add(2 * time.Second)); err != nil {
				t.Fatal(err)
			}
			for i, m := range []capture.Manifest{first.Manifest(), second.Manifest()} {
				start := t0.Add(time.Duration(i) * time.Second)
				near(t, fmt.Sprintf("segment %d video startedAt", i), m.Video.StartedAt, start.UnixMilli(), 40)
				near(t, fmt.Sprintf("segment %d video endedAt", i), m.Video.EndedAt, start.Add(time.Second).UnixMilli(), 40)
				near(t, fmt.Sprintf("segment %d audio startedAt", i), m.Audio.StartedAt, start.UnixMilli(), 40)
				near(t, fmt.Sprintf("segment %d audio endedAt", i), m.Audio.EndedAt, start.Add(time.Second).UnixMilli(), 40)
				near(t, fmt.Sprintf("segment %d frames", i), m.Video.Samples, 30, 1)
			}
		})
	}
}

// TestTakes: LastTake finds a stream's highest take and whether EndTake
// ended it; names that are not safe path elements have none.
func TestTakes(t *testing.T) {
	work := t.TempDir()
	if take, ended := capture.LastTake(work, "str_CAM_A_con_A"); take != -1 || ended {
		t.Errorf("no take yet: %d %v", take, ended)
	}
	for _, take := range []int{0, 1} {
		cfg := capture.Config{WorkDir: work, RecordingID: "ses_T", Take: take,
			Stream: capture.Stream{StreamID: "str_CAM_A_con_A", HasAudio: true}}
		seg, err := capture.Open(cfg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := seg.Close(time.Now()); err != nil {
			t.Fatal(err)
		}
		if got, ended := capture.LastTake(work, "str_CAM_A_con_A"); got != take || ended {
			t.Errorf("after take %d: LastTake %d, ended %v", take, got, ended)
		}
	}
	if err := capture.EndTake(work, "str_CAM_A_con_A", 1); err != nil {
		t.Fatal(err)
	}
	if got, ended := capture.LastTake(work, "str_CAM_A_con_A"); got != 1 || !ended {
		t.Errorf("after EndTake: %d %v, want 1 ended", got, ended)
	}
	// The marker is no segment.
	if found, err := capture.List(work); err != nil || len(found) != 2 {
		t.Errorf("List: %d segments, %v", len(found), err)
	}
	if err := capture.EndTake(work, "../x", 0); err == nil {
		t.Error("EndTake of an unsafe stream id")
	}
	if take, _ := capture.LastTake(work, ".."); take != -1 {
		t.Errorf("LastTake(..) = %d", take)
	}
}
