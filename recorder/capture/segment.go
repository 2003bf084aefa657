package capture

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// Errors of this package; wrapped with details.
var (
	// ErrConfig: Config is invalid.
	ErrConfig = errors.New("capture: invalid configuration")
	// ErrClosed: the segment was closed.
	ErrClosed = errors.New("capture: segment closed")
	// ErrNoTrack: the stream has no such track (Stream.HasAudio, HasVideo).
	ErrNoTrack = errors.New("capture: the stream has no such track")
	// ErrDiscontinuity: the RTP timestamps jumped further than
	// Config.MaxGap, or a packet comes from another RTP source (SSRC) than
	// its track's first: a new sender, such as the subscription's new peer
	// connection after its media node crashed, which numbers its packets
	// and stamps their time afresh. The packet is not written: the caller
	// closes the segment and opens a new one with it.
	ErrDiscontinuity = errors.New("capture: RTP timestamp discontinuity")
)

// Config configures a segment. Zero durations and sizes take the defaults
// given.
type Config struct {
	// WorkDir is the recording's working directory (required).
	WorkDir string
	// RecordingID is OpenVidu's recording id (required).
	RecordingID string
	// Stream is the recorded stream; StreamID is required, and VideoCodec
	// when HasVideo.
	Stream Stream
	// Take counts from 0 the times this stream was started being recorded
	// in this recording (a crash continues the same take).
	Take int
	// SegmentID names the segment within its take: [A-Za-z0-9_.-], unique.
	// Default: "<opened at, Unix ms>-<8 random hex digits>".
	SegmentID string
	// CheckpointInterval is how often (in packet arrival time) the manifest
	// is rewritten: what a crash can lose at most. Default 1 s.
	CheckpointInterval time.Duration
	// RequestKeyframe, if set, is called when the video needs a keyframe: a
	// frame was dropped while waiting for the first one, or packets were
	// lost (once the sample builder gave up on them), at most every
	// KeyframeRequestInterval (default 500 ms). It runs inside WriteVideo:
	// it must not call the segment.
	RequestKeyframe         func()
	KeyframeRequestInterval time.Duration
	// MaxLate is how many packets (video; audio: a tenth of it, at least
	// 16) the sample builder waits for a missing one (a retransmission),
	// MaxDelay how long in RTP time. Defaults 256 packets and 500 ms.
	// After a loss, written video lags the packets by up to twice that
	// wait (pion's builder waits again past the hole): a crash loses it,
	// with what came after the last checkpoint.
	MaxLate  uint16
	MaxDelay time.Duration
	// MaxGap is the largest audio timestamp gap filled with concealment
	// before the segment reports ErrDiscontinuity. Default 1 hour.
	MaxGap time.Duration
}

// Segment writes one stream's tracks into one segment directory. Its methods
// are safe for concurrent use (audio and video arrive from two goroutines).
type Segment struct {
	mu  sync.Mutex
	cfg Config
	dir string

	manifest       Manifest
	video          *videoTrack
	audio          *audioTrack
	videoSource    source
	audioSource    source
	lastCheckpoint time.Time
	lastKeyRequest time.Time
	closed         bool
}

// Open creates the segment's directory and its manifest; at is the current
// time. It fails with ErrConfig for an invalid configuration and if the
// segment directory exists.
func Open(cfg Config, at time.Time) (*Segment, error) {
	if cfg.WorkDir == "" || cfg.RecordingID == "" {
		return nil, fmt.Errorf("%w: WorkDir and RecordingID are required", ErrConfig)
	}
	if !cfg.Stream.HasAudio && !cfg.Stream.HasVideo {
		return nil, fmt.Errorf("%w: stream %s has neither audio nor video", ErrConfig, cfg.Stream.StreamID)
	}
	if cfg.SegmentID == "" {
		var r [4]byte
		if _, err := rand.Read(r[:]); err != nil {
			return nil, fmt.Errorf("segment id: %w", err)
		}
		cfg.SegmentID = strconv.FormatInt(at.UnixMilli(), 10) + "-" + hex.EncodeToString(r[:])
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = time.Second
	}
	if cfg.KeyframeRequestInterval <= 0 {
		cfg.KeyframeRequestInterval = 500 * time.Millisecond
	}
	if cfg.MaxLate == 0 {
		cfg.MaxLate = 256
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 500 * time.Millisecond
	}
	if cfg.MaxGap <= 0 {
		cfg.MaxGap = time.Hour
	}
	if !cfg.Stream.HasVideo {
		cfg.Stream.VideoCodec, cfg.Stream.TypeOfVideo = "", ""
	}
	dir, err := segmentDir(cfg.WorkDir, cfg.Stream.StreamID, cfg.Take, cfg.SegmentID)
	if err != nil {
		return nil, err
	}
	s := &Segment{cfg: cfg, dir: dir, lastCheckpoint: at}
	if cfg.Stream.HasVideo {
		if s.video, err = newVideoTrack(dir, cfg.Stream.VideoCodec, cfg.MaxLate, cfg.MaxDelay); err != nil {
			return nil, err
		}
	}
	if cfg.Stream.HasAudio {
		s.audio = newAudioTrack(dir, max(cfg.MaxLate/10, 16), cfg.MaxDelay, cfg.MaxGap)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("create segment directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create segment directory: %w", err)
	}
	s.manifest = Manifest{
		Format:      manifestFormat,
		RecordingID: cfg.RecordingID,
		SegmentID:   cfg.SegmentID,
		Take:        cfg.Take,
		Stream:      cfg.Stream,
		OpenedAt:    at.UnixMilli(),
	}
	if err := s.checkpoint(at); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir returns the segment directory.
func (s *Segment) Dir() string { return s.dir }

// WriteVideo records one video RTP packet that arrived at at. The segment
// keeps p: the caller must not reuse it. Packets may come out of order,
// duplicated or not at all. It fails with ErrNoTrack without video, ErrClosed
// after Close, or with the writer's error.
func (s *Segment) WriteVideo(p *rtp.Packet, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.video == nil {
		return fmt.Errorf("%w: video of %s", ErrNoTrack, s.cfg.Stream.StreamID)
	}
	if err := s.videoSource.check(p.SSRC, "video"); err != nil {
		return err
	}
	needKey, err := s.video.push(p, at)
	if err != nil {
		return err
	}
	if needKey && s.cfg.RequestKeyframe != nil &&
		at.Sub(s.lastKeyRequest) >= s.cfg.KeyframeRequestInterval {
		s.lastKeyRequest = at
		s.cfg.RequestKeyframe()
	}
	return s.maybeCheckpoint(at)
}

// WriteAudio records one Opus RTP packet that arrived at at; see WriteVideo.
func (s *Segment) WriteAudio(p *rtp.Packet, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.audio == nil {
		return fmt.Errorf("%w: audio of %s", ErrNoTrack, s.cfg.Stream.StreamID)
	}
	if err := s.audioSource.check(p.SSRC, "audio"); err != nil {
		return err
	}
	if err := s.audio.push(p, at); err != nil {
		return err
	}
	return s.maybeCheckpoint(at)
}

// NeedsKeyframe reports whether the video waits for its first keyframe.
func (s *Segment) NeedsKeyframe() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.video != nil && s.video.waiting()
}

// Manifest returns the segment's manifest as it stands.
func (s *Segment) Manifest() Manifest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshot()
}

// Close flushes the sample builders (complete frames they hold are written),
// closes the files and marks the manifest closed; at is the current time.
// Closing twice returns ErrClosed.
func (s *Segment) Close(at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	var errs []error
	if s.video != nil {
		errs = append(errs, s.video.flush())
	}
	if s.audio != nil {
		errs = append(errs, s.audio.flush())
	}
	if s.video != nil {
		errs = append(errs, s.video.close())
	}
	if s.audio != nil {
		errs = append(errs, s.audio.close())
	}
	s.manifest.Closed = true
	errs = append(errs, s.checkpoint(at))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close segment %s: %w", s.dir, err)
	}
	return nil
}

// Abandon stops the segment as a crash would: files are closed without
// flushing the sample builders and the manifest stays at its last
// checkpoint (Closed false). A worker that lost its lease on the stream
// abandons its segment. Abandoning a closed segment returns ErrClosed.
func (s *Segment) Abandon() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	var errs []error
	if s.video != nil {
		errs = append(errs, s.video.close())
	}
	if s.audio != nil {
		errs = append(errs, s.audio.close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("abandon segment %s: %w", s.dir, err)
	}
	return nil
}

// source is a track's RTP source: the SSRC of its first packet. One
// segment's track holds one sender's packets: another's sequence numbers
// and timestamps (random starts, RFC 3550) cannot continue its timeline
// (they would be dropped as late, or move its time by hours).
type source struct {
	ssrc  uint32
	known bool
}

// check adopts the first SSRC and reports ErrDiscontinuity for another.
func (s *source) check(ssrc uint32, kind string) error {
	if !s.known {
		s.ssrc, s.known = ssrc, true
		return nil
	}
	if ssrc != s.ssrc {
		return fmt.Errorf("%w: %s from SSRC %d, the segment's is %d (a new sender)", ErrDiscontinuity, kind, ssrc, s.ssrc)
	}
	return nil
}

func (s *Segment) maybeCheckpoint(at time.Time) error {
	if at.Sub(s.lastCheckpoint) < s.cfg.CheckpointInterval {
		return nil
	}
	return s.checkpoint(at)
}

func (s *Segment) checkpoint(at time.Time) error {
	s.lastCheckpoint = at
	s.manifest.UpdatedAt = at.UnixMilli()
	return writeManifest(s.dir, s.snapshot())
}

func (s *Segment) snapshot() Manifest {
	m := s.manifest
	if s.video != nil {
		m.Video = s.video.snapshot()
	}
	if s.audio != nil {
		m.Audio = s.audio.snapshot()
	}
	return m
}
