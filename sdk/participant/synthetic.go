package participant

import "github.com/pion/rtp/codecs"

// Synthetic media for load tests: packets of the sizes and at the rates a
// real encoder would send, with payloads no decoder needs to read, so that
// a media node does its real forwarding work without anyone encoding.

// VideoProfile describes synthetic video: frame rate, bitrate (bits/s)
// and the size its keyframes announce (0 when not given).
type VideoProfile struct {
	FPS           int
	Bitrate       int
	Width, Height int
}

// BitsPerPixel is the VP8 bitrate a resolution implies, per pixel and
// frame: 0.1 gives 583 kbit/s at 540x360@30, in the range WebRTC's VP8
// encoder uses for it.
const BitsPerPixel = 0.1

// DefaultVideo is 540x360 at 30 fps as OpenVidu's load tests send it.
var DefaultVideo = VideoProfileFor(540, 360, 30)

// VideoProfileFor is the profile of a resolution and frame rate.
func VideoProfileFor(width, height, fps int) VideoProfile {
	return VideoProfile{FPS: fps, Bitrate: int(float64(width*height*fps) * BitsPerPixel), Width: width, Height: height}
}

// SimulcastLayers is how many encodings a simulcast publisher sends, with
// openvidu-browser's rids, lowest first: a quarter, half and full width.
var SimulcastLayers = []string{"rdiv4", "rdiv2", "rdiv1"}

// Layers returns the profiles of the simulcast encodings of prof, lowest
// first, as SimulcastLayers: each scaled down by its divisor in both
// dimensions (so a quarter of the bitrate per step), same frame rate.
func (prof VideoProfile) Layers() []VideoProfile {
	out := make([]VideoProfile, len(SimulcastLayers))
	for i := range out {
		div := 1 << (len(out) - 1 - i)
		out[i] = VideoProfile{FPS: prof.FPS, Bitrate: prof.Bitrate / (div * div), Width: prof.Width / div, Height: prof.Height / div}
	}
	return out
}

// vp8Payload writes into buf the start of packet i of frame n: a VP8
// payload descriptor (RFC 7741; S bit on the frame's first packet) and, on
// a first packet, the VP8 frame tag saying key or delta frame with, on a
// keyframe, the start code and size (RFC 6386 section 9.1), so that a
// media node can tell keyframes and layers apart. The rest is filler.
func (prof VideoProfile) vp8Payload(buf []byte, n, i int) {
	clear(buf[:min(len(buf), 11)])
	if i != 0 {
		return
	}
	buf[0] = 0x10
	if len(buf) < 11 {
		return
	}
	if !prof.IsKeyframe(n) {
		buf[1] = 0x01 // P: an inter frame
		return
	}
	buf[4], buf[5], buf[6] = 0x9d, 0x01, 0x2a
	buf[7], buf[8] = byte(prof.Width), byte(prof.Width>>8)&0x3f
	buf[9], buf[10] = byte(prof.Height), byte(prof.Height>>8)&0x3f
}

// KeyframeWidth returns the width a VP8 payload's keyframe announces (ok
// false when the payload does not start a keyframe).
func KeyframeWidth(payload []byte) (width int, ok bool) {
	var vp8 codecs.VP8Packet
	frame, err := vp8.Unmarshal(payload)
	if err != nil || vp8.S != 1 || vp8.PID != 0 || len(frame) < 10 || frame[0]&0x01 != 0 ||
		frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, false
	}
	return int(frame[6]) | int(frame[7]&0x3f)<<8, true
}

// Synthetic video's shape: a keyframe every keyframeInterval frames, this
// many times larger than a delta frame; RTP payloads of at most
// maxVideoPayload bytes, so that packets are at most 1200 bytes as
// libwebrtc's (Chrome's) are: its default maximum RTP packet size, less a
// 12-byte header and about 20 bytes of header extensions.
const (
	keyframeFactor  = 5
	maxVideoPayload = 1168
	// AudioPacketBytes is an Opus packet at ~64 kbit/s every 20 ms.
	AudioPacketBytes = 160
)

// keyframeInterval is two seconds of frames.
func (prof VideoProfile) keyframeInterval() int { return 2 * prof.FPS }

// FramePayloads returns the RTP payload sizes of frame n (0-based): its
// packets, in order. Keyframes (every two seconds, starting with frame 0)
// are keyframeFactor times larger than delta frames, sized so that the
// average over two seconds is the profile's bitrate. A frame is cut as
// libwebrtc's VP8 packetizer cuts it (RtpPacketizer's "split about
// equally"): into the fewest packets of at most maxVideoPayload bytes, of
// sizes differing by at most one byte, so packets average near the maximum
// instead of leaving a small last one.
func (prof VideoProfile) FramePayloads(n int) []int {
	gop := prof.keyframeInterval()
	delta := prof.Bitrate * 2 / 8 / (gop - 1 + keyframeFactor)
	size := delta
	if n%gop == 0 {
		size *= keyframeFactor
	}
	if size <= 0 {
		return nil
	}
	packets := (size + maxVideoPayload - 1) / maxVideoPayload
	out := make([]int, packets)
	for i := range out {
		out[i] = size / packets
		if i < size%packets {
			out[i]++
		}
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
