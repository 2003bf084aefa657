package render

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/at-wat/ebml-go/mkvcore"
	"github.com/at-wat/ebml-go/webm"

	"github.com/chorus-rtc/chorus/recorder/capture"
)

// prepareH264 gives every H.264 video piece a Matroska copy of its access
// units, each at its RTP time (in tmp): Annex-B carries no time, and
// FFmpeg's raw H.264 reader would assume a constant frame rate, which
// WebRTC senders do not keep. The units are copied as they are (Annex-B,
// no codec private data: FFmpeg's parser finds the parameter sets); the
// container is written by ebml-go.
func prepareH264(takes []*take, tmp string) error {
	n := 0
	for _, t := range takes {
		for _, p := range t.video {
			if p.track.Codec != capture.CodecH264 {
				continue
			}
			out := filepath.Join(tmp, fmt.Sprintf("h264-%d.mkv", n))
			n++
			if err := h264ToMatroska(filepath.Join(p.dir, p.track.File), filepath.Join(p.dir, p.track.Index), out); err != nil {
				return err
			}
			p.file = out
		}
	}
	return nil
}

// accessUnit is one line of capture's H.264 index.
type accessUnit struct {
	ticks  int64 // 90 kHz since the first unit
	offset int64 // in the Annex-B file
	key    bool
}

// readIndex reads capture's H.264 index (capture.VideoH264Index); a torn
// last line (a crash while appending) is ignored.
func readIndex(file string) ([]accessUnit, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSegments, err)
	}
	defer f.Close()
	var units []accessUnit
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		ticks, err1 := strconv.ParseInt(fields[0], 10, 64)
		offset, err2 := strconv.ParseInt(fields[1], 10, 64)
		if err1 != nil || err2 != nil || (len(units) > 0 && offset <= units[len(units)-1].offset) {
			continue
		}
		units = append(units, accessUnit{ticks: ticks, offset: offset, key: fields[2] == "1"})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrSegments, file, err)
	}
	return units, nil
}

func h264ToMatroska(annexB, index, out string) (err error) {
	units, err := readIndex(index)
	if err != nil {
		return err
	}
	in, err := os.Open(annexB)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSegments, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSegments, err)
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	header := *webm.DefaultEBMLHeader
	header.DocType = "matroska"
	writers, err := webm.NewSimpleBlockWriter(f, []webm.TrackEntry{{
		Name: "video", TrackNumber: 1, TrackUID: 1, CodecID: "V_MPEG4/ISO/AVC", TrackType: 1,
	}}, mkvcore.WithEBMLHeader(&header))
	if err != nil {
		return errors.Join(fmt.Errorf("render: %s: %w", out, err), f.Close())
	}
	w := writers[0]
	defer func() {
		if cerr := w.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("render: %s: %w", out, cerr)
		}
	}()
	for i, u := range units {
		end := st.Size()
		if i+1 < len(units) {
			end = units[i+1].offset
		}
		if u.offset >= end || end > st.Size() {
			break // a unit indexed but not (fully) written
		}
		buf := make([]byte, end-u.offset)
		if _, err := in.ReadAt(buf, u.offset); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: read %s: %w", ErrSegments, annexB, err)
		}
		if _, err := w.Write(u.key, u.ticks/90, buf); err != nil {
			return fmt.Errorf("render: %s: %w", out, err)
		}
	}
	return nil
}
