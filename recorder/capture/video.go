package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/h264writer"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

const videoClockRate = 90000

// startWindow is how long a track's first packets are held to be put in
// order (startBuffer).
const startWindow = 100 * time.Millisecond

// H.264 NAL unit types (ITU-T H.264 Table 7-1).
const (
	nalIDR = 5
	nalSPS = 7
	nalPPS = 8
)

// videoTrack writes one video track: sample builder, then ivfwriter (VP8) or
// h264writer plus the access unit index (H.264).
type videoTrack struct {
	codec  Codec
	dir    string
	start  startBuffer
	sb     *samplebuilder.SampleBuilder
	seq    *seqFilter
	clock  rtpClock
	record *Track // nil until the first keyframe is written

	ivf *ivfwriter.IVFWriter

	h264     *h264writer.H264Writer
	h264File *countingFile
	index    *os.File
	sps, pps []byte

	first, last, prev int64 // extended RTP timestamps of written samples
	dropped           int64 // before the track starts
}

func newVideoTrack(dir string, codec Codec, maxLate uint16, maxDelay time.Duration) (*videoTrack, error) {
	var depacketizer rtp.Depacketizer
	switch codec {
	case CodecVP8:
		depacketizer = &codecs.VP8Packet{}
	case CodecH264:
		depacketizer = &codecs.H264Packet{}
	default:
		return nil, fmt.Errorf("%w: video codec %q (want %s or %s)", ErrConfig, codec, CodecVP8, CodecH264)
	}
	f := &seqFilter{}
	sb := samplebuilder.New(maxLate, depacketizer, videoClockRate,
		samplebuilder.WithMaxTimeDelay(maxDelay),
		samplebuilder.WithPacketReleaseHandler(func(p *rtp.Packet) { f.release(p.SequenceNumber) }))
	return &videoTrack{
		codec: codec, dir: dir, sb: sb, seq: f,
		start: startBuffer{window: startWindow},
		clock: rtpClock{rate: videoClockRate},
	}, nil
}

// push feeds one packet; it returns whether the track needs a keyframe: a
// frame was dropped waiting for the first one, or packets were lost.
func (v *videoTrack) push(p *rtp.Packet, at time.Time) (needKey bool, err error) {
	lost, waited := v.seq.lost, v.dropped
	v.clock.observe(p.Timestamp, at)
	v.pushAll(v.start.add(p, at)) // the builder may give up on packets here
	err = v.pop()
	return v.seq.lost > lost || (v.record == nil && v.dropped > waited), err
}

func (v *videoTrack) pushAll(packets []*rtp.Packet) {
	for _, p := range packets {
		if !v.seq.admit(p.SequenceNumber) {
			v.countDrop()
			continue
		}
		if len(p.Payload) == 0 {
			// A padding packet (a bandwidth probe) ends a "frame" of its
			// own, which the builder drops: unmarked, the builder would
			// take it and a one-packet frame after it as one frame, and
			// drop both.
			p.Marker = true
		}
		v.sb.Push(p)
	}
}

// flush writes what the sample builder holds (complete frames only).
func (v *videoTrack) flush() error {
	v.pushAll(v.start.drain())
	v.sb.Flush()
	return v.pop()
}

func (v *videoTrack) pop() error {
	for s := v.sb.Pop(); s != nil; s = v.sb.Pop() {
		if err := v.write(s); err != nil {
			return err
		}
	}
	return nil
}

func (v *videoTrack) countDrop() {
	if v.record != nil {
		v.record.Dropped++
	} else {
		v.dropped++
	}
}

// waiting reports whether the track still waits for its first keyframe.
func (v *videoTrack) waiting() bool { return v.record == nil }

func (v *videoTrack) write(s *media.Sample) error {
	if len(s.Data) == 0 {
		return nil
	}
	ext := v.clock.extend(s.PacketTimestamp)
	if v.record != nil && ext <= v.last {
		// A frame older than the last written one (a timestamp going back):
		// the writers need monotonic time.
		v.record.Dropped++
		return nil
	}
	switch v.codec {
	case CodecVP8:
		return v.writeVP8(s, ext)
	default:
		return v.writeH264(s, ext)
	}
}

func (v *videoTrack) writeVP8(s *media.Sample, ext int64) error {
	if v.ivf == nil {
		w, h, key := vp8KeyFrame(s.Data)
		if !key {
			v.dropped++
			return nil
		}
		ivf, err := ivfwriter.New(filepath.Join(v.dir, VideoVP8File),
			ivfwriter.WithCodec(webrtc.MimeTypeVP8),
			ivfwriter.WithWidthAndHeight(uint16(w), uint16(h)),
			ivfwriter.WithFrameRate(1, videoClockRate), // time base 1/90000
			ivfwriter.WithDirectPTS())
		if err != nil {
			return fmt.Errorf("create %s: %w", VideoVP8File, err)
		}
		v.ivf = ivf
		v.begin(s, ext, VideoVP8File, "")
		v.record.Width, v.record.Height = w, h
	}
	// One RTP packet per frame: a VP8 payload descriptor with only S=1
	// (RFC 7741 §4.2), the frame, the marker bit.
	payload := make([]byte, 1+len(s.Data))
	payload[0] = 0x10
	copy(payload[1:], s.Data)
	pkt := &rtp.Packet{Header: rtp.Header{Marker: true, Timestamp: s.PacketTimestamp}, Payload: payload}
	if err := v.ivf.WriteRTP(pkt); err != nil {
		return fmt.Errorf("write %s: %w", VideoVP8File, err)
	}
	v.advance(ext)
	return nil
}

// vp8KeyFrame returns the size of a VP8 key frame (RFC 6386 §9.1) and whether
// frame is one.
func vp8KeyFrame(frame []byte) (width, height int, key bool) {
	if len(frame) < 10 || frame[0]&0x01 != 0 {
		return 0, 0, false
	}
	if frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, 0, false
	}
	width = int(binary.LittleEndian.Uint16(frame[6:]) & 0x3fff)
	height = int(binary.LittleEndian.Uint16(frame[8:]) & 0x3fff)
	return width, height, true
}

func (v *videoTrack) writeH264(s *media.Sample, ext int64) error {
	nals, err := splitAnnexB(s.Data)
	if err != nil {
		v.countDrop()
		return nil //nolint:nilerr // a malformed access unit is dropped, not fatal
	}
	idr, hasSPS, hasPPS := false, false, false
	for _, n := range nals {
		switch n[0] & 0x1f {
		case nalIDR:
			idr = true
		case nalSPS:
			hasSPS = true
			v.sps = n
		case nalPPS:
			hasPPS = true
			v.pps = n
		}
	}
	if v.h264 == nil {
		if !idr || v.sps == nil || v.pps == nil {
			v.dropped++
			return nil
		}
		// h264writer starts at an SPS: the IDR gets the last SPS and PPS seen.
		var head [][]byte
		if !hasSPS {
			head = append(head, v.sps)
		}
		if !hasPPS {
			head = append(head, v.pps)
		}
		nals = append(head, nals...)
		if err := v.openH264(); err != nil {
			return err
		}
		v.begin(s, ext, VideoH264File, VideoH264Index)
	}
	offset := v.h264File.n
	for _, n := range nals {
		// A single NAL unit packet (RFC 6184 §5.6).
		if err := v.h264.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: s.PacketTimestamp}, Payload: n}); err != nil {
			return fmt.Errorf("write %s: %w", VideoH264File, err)
		}
	}
	key := 0
	if idr {
		key = 1
	}
	if _, err := fmt.Fprintf(v.index, "%d %d %d\n", ext-v.first, offset, key); err != nil {
		return fmt.Errorf("write %s: %w", VideoH264Index, err)
	}
	v.advance(ext)
	return nil
}

func (v *videoTrack) openH264() error {
	f, err := os.Create(filepath.Join(v.dir, VideoH264File))
	if err != nil {
		return fmt.Errorf("create %s: %w", VideoH264File, err)
	}
	idx, err := os.Create(filepath.Join(v.dir, VideoH264Index))
	if err != nil {
		return errors.Join(fmt.Errorf("create %s: %w", VideoH264Index, err), f.Close())
	}
	v.h264File = &countingFile{f: f}
	v.h264 = h264writer.NewWith(v.h264File)
	v.index = idx
	return nil
}

// splitAnnexB returns the NAL units of an Annex-B access unit (pion's
// depacketizer output), SEI included.
func splitAnnexB(au []byte) ([][]byte, error) {
	r, err := h264reader.NewReaderWithOptions(bytes.NewReader(au), h264reader.WithIncludeSEI(true))
	if err != nil {
		return nil, fmt.Errorf("read access unit: %w", err)
	}
	var nals [][]byte
	for {
		n, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read access unit: %w", err)
		}
		if len(n.Data) > 0 {
			nals = append(nals, n.Data)
		}
	}
	if len(nals) == 0 {
		return nil, errors.New("read access unit: no NAL unit")
	}
	return nals, nil
}

func (v *videoTrack) begin(s *media.Sample, ext int64, file, index string) {
	v.first, v.last, v.prev = ext, ext, ext
	v.record = &Track{
		Codec:             v.codec,
		File:              file,
		Index:             index,
		ClockRate:         videoClockRate,
		FirstRTPTimestamp: s.PacketTimestamp,
		Dropped:           v.dropped,
	}
}

func (v *videoTrack) advance(ext int64) {
	v.prev, v.last = v.last, ext
	v.record.Samples++
}

// snapshot returns the track's record with its times brought up to date, or
// nil before the first keyframe.
func (v *videoTrack) snapshot() *Track {
	if v.record == nil {
		return nil
	}
	t := *v.record
	t.LastRTPTimestamp = uint32(v.last)
	t.RTPSpan = v.last - v.first
	t.StartedAt = v.clock.wallMillis(v.first)
	// The last frame lasts as long as the one before it.
	t.EndedAt = v.clock.wallMillis(v.last + (v.last - v.prev))
	return &t
}

func (v *videoTrack) close() error {
	var errs []error
	if v.ivf != nil {
		if err := v.ivf.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", VideoVP8File, err))
		}
	}
	if v.h264 != nil {
		if err := v.h264.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", VideoH264File, err))
		}
		if err := v.index.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", VideoH264Index, err))
		}
	}
	return errors.Join(errs...)
}

// countingFile counts the bytes written to a file: the index records where
// each access unit starts.
type countingFile struct {
	f *os.File
	n int64
}

func (c *countingFile) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingFile) Close() error { return c.f.Close() }
