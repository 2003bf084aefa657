package participant

// Synthetic media for load tests: packets of the sizes and at the rates a
// real encoder would send, with payloads no decoder needs to read, so that
// a media node does its real forwarding work without anyone encoding.

// VideoProfile describes synthetic video: frame rate and bitrate (bits/s).
type VideoProfile struct {
	FPS     int
	Bitrate int
}

// BitsPerPixel is the VP8 bitrate a resolution implies, per pixel and
// frame: 0.1 gives 583 kbit/s at 540x360@30, in the range WebRTC's VP8
// encoder uses for it.
const BitsPerPixel = 0.1

// DefaultVideo is 540x360 at 30 fps as OpenVidu's load tests send it.
var DefaultVideo = VideoProfileFor(540, 360, 30)

// VideoProfileFor is the profile of a resolution and frame rate.
func VideoProfileFor(width, height, fps int) VideoProfile {
	return VideoProfile{FPS: fps, Bitrate: int(float64(width*height*fps) * BitsPerPixel)}
}

// Synthetic video's shape: a keyframe every keyframeInterval frames, this
// many times larger than a delta frame; RTP payloads of at most
// maxVideoPayload bytes (below common MTUs after SRTP and headers).
const (
	keyframeFactor  = 5
	maxVideoPayload = 1100
	// AudioPacketBytes is an Opus packet at ~64 kbit/s every 20 ms.
	AudioPacketBytes = 160
)

// keyframeInterval is two seconds of frames.
func (prof VideoProfile) keyframeInterval() int { return 2 * prof.FPS }

// FramePayloads returns the RTP payload sizes of frame n (0-based): its
// packets, in order. Keyframes (every two seconds, starting with frame 0)
// are keyframeFactor times larger than delta frames, sized so that the
// average over two seconds is the profile's bitrate.
func (prof VideoProfile) FramePayloads(n int) []int {
	gop := prof.keyframeInterval()
	delta := prof.Bitrate * 2 / 8 / (gop - 1 + keyframeFactor)
	size := delta
	if n%gop == 0 {
		size *= keyframeFactor
	}
	var out []int
	for size > 0 {
		p := min(size, maxVideoPayload)
		out = append(out, p)
		size -= p
	}
	return out
}

// IsKeyframe reports whether frame n is a keyframe.
func (prof VideoProfile) IsKeyframe(n int) bool { return n%prof.keyframeInterval() == 0 }

// PacketsPerSecond is the video packet rate the profile sends on average.
func (prof VideoProfile) PacketsPerSecond() float64 {
	total := 0
	for n := 0; n < prof.keyframeInterval(); n++ {
		total += len(prof.FramePayloads(n))
	}
	return float64(total) / 2
}
