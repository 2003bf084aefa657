package capture

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// Opus over RTP always runs a 48 kHz clock and is negotiated as stereo
// (RFC 7587 §7).
const (
	opusClockRate = 48000
	opusChannels  = 2
)

// audioTrack writes one Opus track: sample builder, then oggwriter. The Ogg
// granule position counts decoded samples, so timestamp gaps (loss the
// builder gave up on, DTX, a stalled sender) are filled with empty Opus
// frames, which decoders conceal: the file's time stays the RTP time.
type audioTrack struct {
	dir    string
	start  startBuffer
	sb     *samplebuilder.SampleBuilder
	seq    *seqFilter
	clock  rtpClock
	maxGap int64 // RTP ticks
	record *Track

	ogg   *oggwriter.OggWriter
	first int64 // extended RTP timestamp of the first written packet
	pos   int64 // samples written since first, concealment included
	last  int64 // extended RTP timestamp of the last written packet
	toc   byte  // TOC byte of the last written packet
}

func newAudioTrack(dir string, maxLate uint16, maxDelay, maxGap time.Duration) *audioTrack {
	f := &seqFilter{}
	sb := samplebuilder.New(maxLate, &codecs.OpusPacket{}, opusClockRate,
		samplebuilder.WithMaxTimeDelay(maxDelay),
		samplebuilder.WithPacketReleaseHandler(func(p *rtp.Packet) { f.release(p.SequenceNumber) }))
	return &audioTrack{
		dir: dir, sb: sb, seq: f,
		start:  startBuffer{window: startWindow},
		clock:  rtpClock{rate: opusClockRate},
		maxGap: int64(maxGap / time.Millisecond * opusClockRate / 1000),
	}
}

func (a *audioTrack) push(p *rtp.Packet, at time.Time) error {
	a.clock.observe(p.Timestamp, at)
	a.pushAll(a.start.add(p, at))
	return a.pop()
}

func (a *audioTrack) pushAll(packets []*rtp.Packet) {
	for _, p := range packets {
		if !a.seq.admit(p.SequenceNumber) {
			if a.record != nil {
				a.record.Dropped++
			}
			continue
		}
		a.sb.Push(p)
	}
}

func (a *audioTrack) flush() error {
	a.pushAll(a.start.drain())
	a.sb.Flush()
	return a.pop()
}

func (a *audioTrack) pop() error {
	for s := a.sb.Pop(); s != nil; s = a.sb.Pop() {
		if err := a.write(s); err != nil {
			return err
		}
	}
	return nil
}

func (a *audioTrack) write(s *media.Sample) error {
	n := opusSamples(s.Data)
	if n == 0 {
		if a.record != nil {
			a.record.Dropped++
		}
		return nil
	}
	ext := a.clock.extend(s.PacketTimestamp)
	if a.ogg == nil {
		w, err := oggwriter.New(filepath.Join(a.dir, AudioOpusFile), opusClockRate, opusChannels)
		if err != nil {
			return fmt.Errorf("create %s: %w", AudioOpusFile, err)
		}
		a.ogg = w
		a.first, a.last = ext, ext
		a.record = &Track{
			Codec:             CodecOpus,
			File:              AudioOpusFile,
			ClockRate:         opusClockRate,
			FirstRTPTimestamp: s.PacketTimestamp,
		}
	}
	gap := ext - a.first - a.pos
	if gap > a.maxGap {
		return fmt.Errorf("%w: audio timestamps jumped %d ms", ErrDiscontinuity, gap*1000/opusClockRate)
	}
	if gap < -int64(n) {
		// Behind what was written (a sender that rewound its clock): drop.
		a.record.Dropped++
		return nil
	}
	// Fill the gap with empty frames of the last packet's mode and channels
	// (code 0: one frame, no data), as many as fit.
	filler := []byte{a.toc &^ 0x03}
	if per := int64(opusSamples(filler)); a.pos > 0 && per > 0 {
		for ; gap >= per; gap -= per {
			if err := a.writePacket(s.PacketTimestamp, filler); err != nil {
				return err
			}
			a.pos += per
			a.record.Concealed++
		}
	}
	if err := a.writePacket(s.PacketTimestamp, s.Data); err != nil {
		return err
	}
	a.pos += int64(n)
	a.last = ext
	a.toc = s.Data[0]
	a.record.Samples++
	return nil
}

func (a *audioTrack) writePacket(ts uint32, payload []byte) error {
	if err := a.ogg.WriteRTP(&rtp.Packet{Header: rtp.Header{Timestamp: ts}, Payload: payload}); err != nil {
		return fmt.Errorf("write %s: %w", AudioOpusFile, err)
	}
	return nil
}

func (a *audioTrack) snapshot() *Track {
	if a.record == nil {
		return nil
	}
	t := *a.record
	t.LastRTPTimestamp = uint32(a.last)
	t.RTPSpan = a.last - a.first
	t.StartedAt = a.clock.wallMillis(a.first)
	t.EndedAt = a.clock.wallMillis(a.first + a.pos)
	return &t
}

func (a *audioTrack) close() error {
	if a.ogg == nil {
		return nil
	}
	if err := a.ogg.Close(); err != nil {
		return fmt.Errorf("close %s: %w", AudioOpusFile, err)
	}
	return nil
}

// opusSamples is the number of 48 kHz samples an Opus packet decodes to
// (RFC 6716 §3.1 TOC byte, §3.2 frame count), 0 for a malformed packet.
func opusSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	config := int(toc >> 3)
	var per int // samples per frame at 48 kHz
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		per = []int{480, 960, 1920, 2880}[config%4]
	case config < 16: // Hybrid: 10, 20 ms
		per = []int{480, 960}[config%2]
	default: // CELT: 2.5, 5, 10, 20 ms
		per = []int{120, 240, 480, 960}[config%4]
	}
	frames := 1
	switch toc & 0x03 {
	case 1, 2:
		frames = 2
	case 3:
		if len(p) < 2 {
			return 0
		}
		frames = int(p[1] & 0x3f)
	}
	if n := per * frames; n > 0 && n <= 5760 { // at most 120 ms
		return n
	}
	return 0
}
