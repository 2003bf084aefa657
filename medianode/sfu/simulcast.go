package sfu

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"
)

// maxLayers is the most simulcast encodings a published video track may
// have: openvidu-browser sends three at 960x540 and above (rids rdiv4,
// rdiv2 and rdiv1), two from 480x270, one below.
const maxLayers = 3

// layerOrder maps each rid of a simulcast offer (in the offer's order) to
// its layer, 0 being the lowest quality. openvidu-browser's rids say their
// scale ("rdiv4": a quarter of the width), LiveKit's q, h and f their
// quality; any other rids keep the offer's order, lowest first as
// browsers list them. At most maxLayers rids get a layer: the others are
// not forwarded.
func layerOrder(rids []string) map[string]int {
	if len(rids) > maxLayers {
		rids = rids[:maxLayers]
	}
	rank := func(rid string) (int, bool) {
		if d, ok := strings.CutPrefix(rid, "rdiv"); ok {
			if n, err := strconv.Atoi(d); err == nil && n > 0 {
				return -n, true
			}
		}
		switch rid {
		case "q":
			return 0, true
		case "h":
			return 1, true
		case "f":
			return 2, true
		}
		return 0, false
	}
	sorted := slices.Clone(rids)
	known := true
	for _, rid := range rids {
		if _, ok := rank(rid); !ok {
			known = false
		}
	}
	if known {
		slices.SortStableFunc(sorted, func(a, b string) int {
			ra, _ := rank(a)
			rb, _ := rank(b)
			return ra - rb
		})
	}
	out := make(map[string]int, len(sorted))
	for i, rid := range sorted {
		out[rid] = i
	}
	return out
}

// isKeyframeStart reports whether an RTP payload of the given codec
// starts a keyframe: where a subscriber may start decoding, or switch to
// another layer.
//
// VP8 (RFC 7741): the payload descriptor's S bit and partition index 0,
// then the payload header's P bit clear (key frame, RFC 6386 section 9.1).
// H.264 (RFC 6184): an IDR slice or a sequence parameter set, alone, first
// in a STAP-A, or the start of a fragmented IDR slice (FU-A).
func isKeyframeStart(mime string, payload []byte) bool {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		d, ok := parseVP8Descriptor(payload)
		return ok && d.start && d.partition == 0 && len(payload) > d.size && payload[d.size]&0x01 == 0
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		if len(payload) < 2 {
			return false
		}
		switch nal := payload[0] & 0x1f; nal {
		case 5, 7:
			return true
		case 24: // STAP-A: 16-bit size, then the first NAL unit
			return len(payload) > 3 && (payload[3]&0x1f == 7 || payload[3]&0x1f == 5)
		case 28: // FU-A: start bit and the fragmented unit's type
			return payload[1]&0x80 != 0 && payload[1]&0x1f == 5
		}
	}
	return false
}

// vp8KeyframeSize reads the width and height of a VP8 keyframe from the
// first packet of the frame (RFC 6386 section 9.1: 3-byte frame tag, start
// code 9d 01 2a, then 14-bit width and height, little-endian).
func vp8KeyframeSize(mime string, payload []byte) (width, height uint32, ok bool) {
	if !strings.EqualFold(mime, webrtc.MimeTypeVP8) {
		return 0, 0, false
	}
	d, ok := parseVP8Descriptor(payload)
	if !ok {
		return 0, 0, false
	}
	p := payload[d.size:]
	if len(p) < 10 || p[3] != 0x9d || p[4] != 0x01 || p[5] != 0x2a {
		return 0, 0, false
	}
	return uint32(binary.LittleEndian.Uint16(p[6:8]) & 0x3fff), uint32(binary.LittleEndian.Uint16(p[8:10]) & 0x3fff), true
}

// vp8Descriptor is what the layer switcher reads of a VP8 payload
// descriptor (RFC 7741 section 4.2).
type vp8Descriptor struct {
	size      int // bytes of the descriptor: the VP8 payload follows
	start     bool
	partition uint8
	// pictureID is at offset picOffset, 7 or 15 bits (picBits; 0: absent).
	picOffset int
	picBits   int
	pictureID uint16
	// tl0 (TL0PICIDX) is at offset tl0Offset (0: absent).
	tl0Offset int
	tl0       uint8
}

// parseVP8Descriptor parses the payload descriptor at the start of a VP8
// RTP payload; ok is false when payload is too short for what its flags
// announce.
func parseVP8Descriptor(payload []byte) (d vp8Descriptor, ok bool) {
	if len(payload) < 1 {
		return d, false
	}
	d.start = payload[0]&0x10 != 0
	d.partition = payload[0] & 0x07
	d.size = 1
	if payload[0]&0x80 == 0 {
		return d, true
	}
	if len(payload) < 2 {
		return d, false
	}
	x := payload[1]
	d.size = 2
	if x&0x80 != 0 { // I: picture id
		if len(payload) < d.size+1 {
			return d, false
		}
		d.picOffset = d.size
		if payload[d.size]&0x80 != 0 {
			if len(payload) < d.size+2 {
				return d, false
			}
			d.picBits, d.pictureID = 15, binary.BigEndian.Uint16(payload[d.size:])&0x7fff
			d.size += 2
		} else {
			d.picBits, d.pictureID = 7, uint16(payload[d.size]&0x7f)
			d.size++
		}
	}
	if x&0x40 != 0 { // L: TL0PICIDX
		if len(payload) < d.size+1 {
			return d, false
		}
		d.tl0Offset, d.tl0 = d.size, payload[d.size]
		d.size++
	}
	if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
		d.size++
	}
	return d, len(payload) >= d.size
}

// rewriteVP8 writes payload into dst with its picture id advanced by
// picDelta and its TL0PICIDX by tl0Delta (each modulo its field's width),
// and returns the rewritten payload.
func rewriteVP8(dst, payload []byte, d vp8Descriptor, picDelta uint16, tl0Delta uint8) []byte {
	out := dst[:len(payload)]
	copy(out, payload)
	switch d.picBits {
	case 15:
		binary.BigEndian.PutUint16(out[d.picOffset:], 0x8000|(d.pictureID+picDelta)&0x7fff)
	case 7:
		out[d.picOffset] = byte(d.pictureID+picDelta) & 0x7f
	}
	if d.tl0Offset != 0 {
		out[d.tl0Offset] = d.tl0 + tl0Delta
	}
	return out
}
