package render

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/chorus-rtc/chorus/recorder/capture"
)

// piece is one track of one segment placed on the recording's timeline.
// Times are milliseconds since the recording's CreatedAt.
type piece struct {
	track capture.Track
	dir   string // segment directory
	// file is what FFmpeg reads: the track's file, or for H.264 the
	// Matroska file made from it (prepareH264).
	file string
	// start is when the media's first sample plays, end when the piece
	// stops: its own end, the next piece's start, or the recording's stop.
	start, end int64
	// preSkip is the Ogg Opus pre-skip in 48 kHz samples: decoded audio
	// starts that much after the first packet (RFC 7845 §4.2).
	preSkip int64
}

// take is one continuous recording of a stream: its segments' tracks,
// ordered, without overlap.
type take struct {
	stream capture.Stream
	number int
	video  []*piece
	audio  []*piece
}

// span returns when the take's first piece starts and its last one ends.
func (t *take) span() (start, end int64) {
	first := true
	for _, p := range append(append([]*piece{}, t.video...), t.audio...) {
		if first || p.start < start {
			start = p.start
		}
		if first || p.end > end {
			end = p.end
		}
		first = false
	}
	return start, end
}

// loadTakes reads rec's segments from workDir and places them on the
// recording's timeline: tracks rec does not record are left out, a piece
// ends where the next piece of its take starts (an old worker that kept
// writing yields to the new one) and at the recording's stop, pieces
// outside the recording are dropped, and so are takes left empty. Takes
// are ordered by start, then stream id.
func loadTakes(workDir string, rec Recording) ([]*take, error) {
	found, err := capture.List(workDir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSegments, err)
	}
	created := rec.CreatedAt.UnixMilli()
	duration := rec.StoppedAt.UnixMilli() - created
	byKey := map[string]*take{}
	var takes []*take
	for _, f := range found {
		m := f.Manifest
		if m.RecordingID != rec.ID {
			return nil, fmt.Errorf("%w: segment %s belongs to recording %q", ErrSegments, f.Dir, m.RecordingID)
		}
		key := fmt.Sprintf("%s/%d", m.Stream.StreamID, m.Take)
		t := byKey[key]
		if t == nil {
			t = &take{stream: m.Stream, number: m.Take}
			byKey[key] = t
			takes = append(takes, t)
		}
		add := func(list *[]*piece, tr *capture.Track) error {
			if tr == nil {
				return nil
			}
			p := &piece{
				track: *tr, dir: f.Dir, file: filepath.Join(f.Dir, tr.File),
				start: tr.StartedAt - created, end: tr.EndedAt - created,
			}
			if !m.Closed {
				// The worker died: its file holds what it wrote after its
				// last checkpoint too.
				span, err := mediaSpan(p)
				if err != nil {
					return err
				}
				p.end = max(p.end, p.start+span)
			}
			if p.end > p.start {
				*list = append(*list, p)
			}
			return nil
		}
		if rec.HasVideo {
			if err := add(&t.video, m.Video); err != nil {
				return nil, err
			}
		}
		if rec.HasAudio {
			if err := add(&t.audio, m.Audio); err != nil {
				return nil, err
			}
		}
	}
	var out []*take
	for _, t := range takes {
		t.video = clip(t.video, duration)
		t.audio = clip(t.audio, duration)
		if len(t.video)+len(t.audio) == 0 {
			continue
		}
		for _, p := range t.audio {
			if p.preSkip, err = opusPreSkip(p.file); err != nil {
				return nil, err
			}
		}
		out = append(out, t)
	}
	sort.SliceStable(out, func(i, j int) bool {
		si, _ := out[i].span()
		sj, _ := out[j].span()
		if si != sj {
			return si < sj
		}
		if out[i].stream.StreamID != out[j].stream.StreamID {
			return out[i].stream.StreamID < out[j].stream.StreamID
		}
		return out[i].number < out[j].number
	})
	return out, nil
}

// clip orders pieces, ends each where the next one starts, and drops what
// falls outside [0, duration).
func clip(pieces []*piece, duration int64) []*piece {
	sort.SliceStable(pieces, func(i, j int) bool { return pieces[i].start < pieces[j].start })
	var out []*piece
	for i, p := range pieces {
		if i+1 < len(pieces) && pieces[i+1].start < p.end {
			p.end = pieces[i+1].start
		}
		p.end = min(p.end, duration)
		if p.end <= p.start || p.end <= 0 {
			continue
		}
		out = append(out, p)
	}
	return out
}

// opusPreSkip reads the pre-skip of an Ogg Opus file's header.
func opusPreSkip(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrSegments, err)
	}
	defer f.Close()
	_, header, err := oggreader.NewWith(f)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrSegments, file, err)
	}
	return int64(header.PreSkip), nil
}

// mediaSpan returns how long the media of a piece's file lasts, in ms, from
// its first sample to the end of its last complete one (a file cut by a
// crash ends with a torn frame or page, which is not counted).
func mediaSpan(p *piece) (int64, error) {
	switch p.track.Codec {
	case capture.CodecVP8:
		return ivfSpan(p.file)
	case capture.CodecH264:
		units, err := readIndex(filepath.Join(p.dir, p.track.Index))
		if err != nil || len(units) < 2 {
			return 0, err
		}
		last, prev := units[len(units)-1].ticks, units[len(units)-2].ticks
		return (2*last - prev) / 90, nil
	case capture.CodecOpus:
		return oggSpan(p.file)
	default:
		return 0, fmt.Errorf("%w: codec %q in %s", ErrSegments, p.track.Codec, p.dir)
	}
}

// ivfSpan reads the frame headers of an IVF file written by capture (PTS
// from 0); the last frame lasts as long as the one before.
func ivfSpan(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrSegments, err)
	}
	defer f.Close()
	r, header, err := ivfreader.NewWith(f)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrSegments, file, err)
	}
	// The time base is TimebaseNumerator/TimebaseDenominator seconds per
	// PTS unit; the reader reports PTS*Denominator/Numerator.
	num, den := uint64(header.TimebaseNumerator), uint64(header.TimebaseDenominator)
	if num == 0 || den == 0 {
		return 0, fmt.Errorf("%w: %s: time base %d/%d", ErrSegments, file, num, den)
	}
	var last, prev uint64
	n := 0
	for {
		_, h, err := r.ParseNextFrame()
		if err != nil {
			break // EOF, or a frame cut by the crash
		}
		prev, last = last, h.Timestamp*num/den
		n++
	}
	if n < 2 {
		return 0, nil
	}
	return int64((2*last - prev) * 1000 * num / den), nil
}

// oggSpan reads the granule positions of an Ogg Opus file written by
// capture: the last complete page's granule counts the 48 kHz samples
// since the first packet's start.
func oggSpan(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrSegments, err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrSegments, file, err)
	}
	var granule uint64
	for {
		_, h, err := r.ParseNextPage()
		if err != nil {
			break // EOF, or a page cut by the crash
		}
		granule = max(granule, h.GranulePosition)
	}
	return int64(granule / 48), nil
}
