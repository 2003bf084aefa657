package capture

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// File names inside a segment directory.
const (
	ManifestFile   = "segment.json"
	VideoVP8File   = "video.ivf"
	VideoH264File  = "video.h264"
	VideoH264Index = "video.h264.idx"
	AudioOpusFile  = "audio.ogg"
	streamsDir     = "streams"
	manifestFormat = 1
)

// Codec names a recorded track's codec.
type Codec string

// The codecs a segment records (what Chorus media nodes forward).
const (
	CodecVP8  Codec = "VP8"
	CodecH264 Codec = "H264"
	CodecOpus Codec = "OPUS"
)

// Stream describes the recorded stream: the fields of OpenVidu's INDIVIDUAL
// sync file (OpenVidu's recording docs, "Individual stream recording").
type Stream struct {
	StreamID     string `json:"streamId"`
	ConnectionID string `json:"connectionId"`
	ClientData   string `json:"clientData"`
	ServerData   string `json:"serverData"`
	HasAudio     bool   `json:"hasAudio"`
	HasVideo     bool   `json:"hasVideo"`
	// TypeOfVideo is "CAMERA", "SCREEN", "IPCAM" or "CUSTOM"; empty without video.
	TypeOfVideo string `json:"typeOfVideo,omitempty"`
	// VideoCodec is CodecVP8 or CodecH264 when HasVideo.
	VideoCodec Codec `json:"videoCodec,omitempty"`
}

// Manifest is segment.json: what a segment holds and where it sits in time.
// Times are Unix milliseconds.
type Manifest struct {
	Format      int    `json:"format"`
	RecordingID string `json:"recordingId"`
	SegmentID   string `json:"segmentId"`
	Take        int    `json:"take"`
	Stream      Stream `json:"stream"`
	// OpenedAt is when the worker opened the segment.
	OpenedAt int64 `json:"openedAt"`
	// UpdatedAt is the last checkpoint (or Close).
	UpdatedAt int64 `json:"updatedAt"`
	// Closed is false for a segment whose writer died: its tracks end at the
	// last checkpoint, and media written after it is ignored.
	Closed bool `json:"closed"`
	// Video and Audio are nil until the track's first sample is written.
	Video *Track `json:"video,omitempty"`
	Audio *Track `json:"audio,omitempty"`
}

// Track is one track of a segment.
type Track struct {
	Codec Codec `json:"codec"`
	// File is the media file, relative to the segment directory.
	File string `json:"file"`
	// Index is the H.264 access unit index (VideoH264Index), relative to the
	// segment directory; empty for other codecs.
	Index string `json:"index,omitempty"`
	// ClockRate is the RTP clock in Hz (90000 video, 48000 Opus).
	ClockRate uint32 `json:"clockRate"`
	// FirstRTPTimestamp and LastRTPTimestamp are the RTP timestamps of the
	// first and last written samples; RTPSpan is last - first, unwrapped.
	FirstRTPTimestamp uint32 `json:"firstRtpTimestamp"`
	LastRTPTimestamp  uint32 `json:"lastRtpTimestamp"`
	RTPSpan           int64  `json:"rtpSpan"`
	// StartedAt is the wall-clock time of the first written sample, EndedAt
	// that of the end of the last one (Unix ms).
	StartedAt int64 `json:"startedAt"`
	EndedAt   int64 `json:"endedAt"`
	// Samples counts the written frames (video) or Opus packets (audio).
	Samples int64 `json:"samples"`
	// Dropped counts the samples not written: incomplete, before the first
	// keyframe, or too late.
	Dropped int64 `json:"dropped"`
	// Concealed counts the empty Opus frames written in timestamp gaps.
	Concealed int64 `json:"concealed,omitempty"`
	// Width and Height are the size of the first VP8 keyframe (0 for H.264).
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

// StartedAt returns the earliest start of the segment's tracks (Unix ms) and
// false when no track has been written.
func (m Manifest) StartedAt() (int64, bool) {
	var at int64
	ok := false
	for _, t := range []*Track{m.Video, m.Audio} {
		if t != nil && (!ok || t.StartedAt < at) {
			at, ok = t.StartedAt, true
		}
	}
	return at, ok
}

// EndedAt returns the latest end of the segment's tracks (Unix ms) and false
// when no track has been written.
func (m Manifest) EndedAt() (int64, bool) {
	var at int64
	ok := false
	for _, t := range []*Track{m.Video, m.Audio} {
		if t != nil && (!ok || t.EndedAt > at) {
			at, ok = t.EndedAt, true
		}
	}
	return at, ok
}

// Found is a segment found in a working directory.
type Found struct {
	// Dir is the segment directory (absolute when the working directory was).
	Dir      string
	Manifest Manifest
}

// List returns the segments of a recording's working directory, ordered by
// stream id, take and start time (segments without media come first in
// their take). A missing working directory has no segments. A segment
// directory whose manifest cannot be read is an error.
func List(workDir string) ([]Found, error) {
	pattern := filepath.Join(workDir, streamsDir, "*", "*", "*", ManifestFile)
	paths, err := filepath.Glob(pattern)
	if err != nil {
		return nil, fmt.Errorf("list segments of %s: %w", workDir, err)
	}
	var found []Found
	for _, p := range paths {
		dir := filepath.Dir(p)
		m, err := ReadManifest(dir)
		if err != nil {
			return nil, err
		}
		found = append(found, Found{Dir: dir, Manifest: m})
	}
	sort.SliceStable(found, func(i, j int) bool {
		a, b := found[i].Manifest, found[j].Manifest
		if a.Stream.StreamID != b.Stream.StreamID {
			return a.Stream.StreamID < b.Stream.StreamID
		}
		if a.Take != b.Take {
			return a.Take < b.Take
		}
		sa, _ := a.StartedAt()
		sb, _ := b.StartedAt()
		if sa != sb {
			return sa < sb
		}
		return a.SegmentID < b.SegmentID
	})
	return found, nil
}

// ReadManifest reads dir's segment.json; it fails if the file is missing,
// is not JSON, or has another format than this package writes.
func ReadManifest(dir string) (Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return Manifest{}, fmt.Errorf("read segment manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("decode segment manifest %s: %w", dir, err)
	}
	if m.Format != manifestFormat {
		return Manifest{}, fmt.Errorf("segment manifest %s: format %d, want %d", dir, m.Format, manifestFormat)
	}
	return m, nil
}

// writeManifest replaces dir's segment.json atomically (a reader sees the
// old or the new one, never a torn file).
func writeManifest(dir string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode segment manifest: %w", err)
	}
	tmp := filepath.Join(dir, ManifestFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write segment manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		return fmt.Errorf("write segment manifest: %w", err)
	}
	return nil
}

// segmentDir is where a segment lives; it fails for names that are not a
// single safe path element.
func segmentDir(workDir, streamID string, take int, segmentID string) (string, error) {
	for _, name := range []string{streamID, segmentID} {
		if !isSafeName(name) {
			return "", fmt.Errorf("%w: %q is not a safe file name", ErrConfig, name)
		}
	}
	if take < 0 {
		return "", fmt.Errorf("%w: take %d < 0", ErrConfig, take)
	}
	return filepath.Join(workDir, streamsDir, streamID, strconv.Itoa(take), segmentID), nil
}

// isSafeName reports whether name is 1-200 characters of [A-Za-z0-9_.-] and
// not "." or "..": OpenVidu's stream ids are.
func isSafeName(name string) bool {
	if name == "" || len(name) > 200 || name == "." || name == ".." {
		return false
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// takeEndedFile marks a take the recorder ended on purpose (its stream
// stopped being recorded): a worker taking the recording over starts the
// stream's next take rather than going on in that one.
const takeEndedFile = "ended"

// EndTake marks a stream's take ended on purpose (record turned off, or the
// stream unpublished); LastTake reports it.
func EndTake(workDir, streamID string, take int) error {
	dir, err := segmentDir(workDir, streamID, take, "x")
	if err != nil {
		return err
	}
	dir = filepath.Dir(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("end take %d of %s: %w", take, streamID, err)
	}
	if err := os.WriteFile(filepath.Join(dir, takeEndedFile), nil, 0o644); err != nil {
		return fmt.Errorf("end take %d of %s: %w", take, streamID, err)
	}
	return nil
}

// LastTake returns the highest take of a stream in a working directory and
// whether it was ended on purpose; -1 when the stream has none.
func LastTake(workDir, streamID string) (take int, ended bool) {
	if !isSafeName(streamID) {
		return -1, false
	}
	entries, err := os.ReadDir(filepath.Join(workDir, streamsDir, streamID))
	if err != nil {
		return -1, false
	}
	take = -1
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() && n > take {
			take = n
		}
	}
	if take < 0 {
		return -1, false
	}
	_, err = os.Stat(filepath.Join(workDir, streamsDir, streamID, strconv.Itoa(take), takeEndedFile))
	return take, err == nil
}
