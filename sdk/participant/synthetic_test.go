package participant

import (
	"math"
	"testing"
)

func TestSyntheticVideo(t *testing.T) {
	for _, tc := range []struct {
		w, h, fps int
		kbps      float64 // the bitrate the resolution implies
	}{
		{540, 360, 30, 583.2},
		{640, 480, 30, 921.6},
		{1280, 720, 30, 2764.8},
		{320, 240, 15, 115.2},
	} {
		prof := VideoProfileFor(tc.w, tc.h, tc.fps)
		if got := float64(prof.Bitrate) / 1000; math.Abs(got-tc.kbps) > 0.1 {
			t.Errorf("%dx%d@%d: %g kbit/s, want %g", tc.w, tc.h, tc.fps, got, tc.kbps)
		}
		bytes, packets := 0, 0
		gop := 2 * tc.fps
		for n := 0; n < gop; n++ {
			sizes := prof.FramePayloads(n)
			if len(sizes) == 0 {
				t.Fatalf("frame %d has no packet", n)
			}
			for _, s := range sizes {
				if s <= 0 || s > maxVideoPayload {
					t.Fatalf("frame %d: payload of %d bytes", n, s)
				}
				bytes += s
			}
			packets += len(sizes)
			if prof.IsKeyframe(n) != (n == 0) {
				t.Errorf("frame %d keyframe = %v", n, prof.IsKeyframe(n))
			}
		}
		// Two seconds of frames average to the profile's bitrate.
		if got := float64(bytes*8) / 2; math.Abs(got-float64(prof.Bitrate))/float64(prof.Bitrate) > 0.01 {
			t.Errorf("%dx%d@%d: sends %.0f bit/s, want %d", tc.w, tc.h, tc.fps, got, prof.Bitrate)
		}
		key, delta := 0, 0
		for _, s := range prof.FramePayloads(0) {
			key += s
		}
		for _, s := range prof.FramePayloads(1) {
			delta += s
		}
		if ratio := float64(key) / float64(delta); math.Abs(ratio-keyframeFactor) > 0.01 {
			t.Errorf("keyframe/delta = %.2f, want %d", ratio, keyframeFactor)
		}
		if pps := prof.PacketsPerSecond(); pps != float64(packets)/2 {
			t.Errorf("PacketsPerSecond %g, want %g", pps, float64(packets)/2)
		}
	}
}
