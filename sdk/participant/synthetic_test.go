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
			frame := 0
			for _, s := range sizes {
				if s <= 0 || s > maxVideoPayload || s < sizes[0]-1 || s > sizes[0] {
					t.Fatalf("frame %d: payloads %v: each at most %d bytes, split about equally", n, sizes, maxVideoPayload)
				}
				frame += s
			}
			if fewest := (frame + maxVideoPayload - 1) / maxVideoPayload; len(sizes) != fewest {
				t.Errorf("frame %d of %d bytes in %d packets, want the fewest (%d)", n, frame, len(sizes), fewest)
			}
			bytes += frame
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

// TestSimulcastLayers: a simulcast profile's encodings, lowest first, are
// openvidu-browser's (a quarter, half and full width), and the synthetic
// VP8 payloads say which frames are keyframes and their size.
func TestSimulcastLayers(t *testing.T) {
	prof := VideoProfileFor(1280, 720, 30)
	layers := prof.Layers()
	want := []struct{ w, h, kbps int }{{320, 180, 172}, {640, 360, 691}, {1280, 720, 2764}}
	if len(layers) != len(want) || len(SimulcastLayers) != len(want) {
		t.Fatalf("%d layers, %d rids; want %d", len(layers), len(SimulcastLayers), len(want))
	}
	for i, l := range layers {
		if l.Width != want[i].w || l.Height != want[i].h || l.Bitrate/1000 != want[i].kbps || l.FPS != 30 {
			t.Errorf("layer %d (%s): %+v, want %dx%d at %d kbit/s", i, SimulcastLayers[i], l, want[i].w, want[i].h, want[i].kbps)
		}
	}
	buf := make([]byte, maxVideoPayload)
	for _, tc := range []struct {
		frame, packet int
		key           bool
	}{
		{0, 0, true},   // a keyframe's first packet
		{0, 1, false},  // its continuation
		{1, 0, false},  // a delta frame
		{60, 0, true},  // the next keyframe, two seconds later
		{61, 0, false}, // and its delta frame
	} {
		for i := range buf {
			buf[i] = 0xff // the previous packet's bytes
		}
		layers[1].vp8Payload(buf, tc.frame, tc.packet)
		w, ok := KeyframeWidth(buf)
		if ok != tc.key || ok && w != 640 {
			t.Errorf("frame %d packet %d: KeyframeWidth = %d, %v; want keyframe %v at 640", tc.frame, tc.packet, w, ok, tc.key)
		}
	}
}
