package render

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chorus-rtc/chorus/recorder/capture"
)

// SyncFile is the JSON file of an INDIVIDUAL recording's ZIP, named
// <Name>.json (OpenVidu's recording docs, "Individual stream recording").
type SyncFile struct {
	// CreatedAt is the recording's start, Unix ms.
	CreatedAt int64       `json:"createdAt"`
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	SessionID string      `json:"sessionId"`
	Files     []SyncEntry `json:"files"`
}

// SyncEntry describes one file of the ZIP, in the ZIP's order.
type SyncEntry struct {
	ConnectionID string `json:"connectionId"`
	StreamID     string `json:"streamId"`
	// Size is the file's size in bytes.
	Size       int64  `json:"size"`
	ClientData string `json:"clientData"`
	ServerData string `json:"serverData"`
	HasAudio   bool   `json:"hasAudio"`
	HasVideo   bool   `json:"hasVideo"`
	// TypeOfVideo is set only when HasVideo.
	TypeOfVideo string `json:"typeOfVideo,omitempty"`
	// StartTimeOffset and EndTimeOffset are when the file's first media
	// starts and its last ends, in ms since CreatedAt: the file lasts
	// EndTimeOffset - StartTimeOffset.
	StartTimeOffset int64 `json:"startTimeOffset"`
	EndTimeOffset   int64 `json:"endTimeOffset"`
}

// individual renders an INDIVIDUAL recording: one file per take of each
// stream, <streamId>.webm (VP8 and Opus copied) or <streamId>.mkv (H.264
// video: WebM cannot hold H.264, Matroska holds it without re-encoding),
// the second take of a stream suffixed -1, the third -2...; the segments of
// a take are concatenated on their wall-clock time, so a crash gap is a
// stretch of the file without media. The ZIP <Name>.zip holds them and
// <Name>.json.
func (r *Renderer) individual(ctx context.Context, run *runner, rec Recording, takes []*take, tmp, outDir string) (Result, error) {
	if err := prepareH264(takes, tmp); err != nil {
		return Result{}, err
	}
	sync := &SyncFile{CreatedAt: rec.CreatedAt.UnixMilli(), ID: rec.ID, Name: rec.Name, SessionID: rec.SessionID, Files: []SyncEntry{}}
	seen := map[string]int{}
	var files []string
	for _, t := range takes {
		name := t.stream.StreamID
		if n := seen[name]; n > 0 {
			name = fmt.Sprintf("%s-%d", name, n)
		}
		seen[t.stream.StreamID]++
		ext := ".webm"
		if len(t.video) > 0 && t.video[0].track.Codec == capture.CodecH264 {
			ext = ".mkv"
		}
		file := filepath.Join(tmp, name+ext)
		if err := renderTake(ctx, run, t, tmp, name, file); err != nil {
			return Result{}, err
		}
		st, err := os.Stat(file)
		if err != nil {
			return Result{}, fmt.Errorf("render: %w", err)
		}
		start, end := t.span()
		entry := SyncEntry{
			ConnectionID: t.stream.ConnectionID, StreamID: t.stream.StreamID, Size: st.Size(),
			ClientData: t.stream.ClientData, ServerData: t.stream.ServerData,
			HasAudio: len(t.audio) > 0, HasVideo: len(t.video) > 0,
			StartTimeOffset: start, EndTimeOffset: end,
		}
		if entry.HasVideo {
			entry.TypeOfVideo = t.stream.TypeOfVideo
		}
		sync.Files = append(sync.Files, entry)
		files = append(files, file)
	}
	zipFile := filepath.Join(tmp, rec.Name+".zip")
	if err := writeZip(zipFile, rec.Name+".json", sync, files); err != nil {
		return Result{}, err
	}
	path, size, err := publish(zipFile, outDir, rec.Name+".zip")
	if err != nil {
		return Result{}, err
	}
	return Result{File: path, Size: size, Sync: sync}, nil
}

// renderTake concatenates a take's pieces, per track, with FFmpeg's concat
// demuxer: each piece is placed at its start relative to the take's start
// (duration: up to the next piece), cut at its end (outpoint), and the
// tracks are muxed with their offsets; nothing is re-encoded.
func renderTake(ctx context.Context, run *runner, t *take, tmp, name, out string) error {
	start, _ := t.span()
	var args []string
	var maps []string
	for _, track := range []struct {
		kind   string
		pieces []*piece
	}{{"v", t.video}, {"a", t.audio}} {
		if len(track.pieces) == 0 {
			continue
		}
		list := filepath.Join(tmp, fmt.Sprintf("%s.%s.ffconcat", name, track.kind))
		if err := os.WriteFile(list, []byte(concatList(track.pieces)), 0o644); err != nil {
			return fmt.Errorf("render: write concat list: %w", err)
		}
		// FFmpeg starts an Ogg Opus input at its first packet's time minus
		// the pre-skip (RFC 7845 §4.2): shift it back so that the first
		// packet is at its own start.
		offset := track.pieces[0].start - start + track.pieces[0].preSkip*1000/48000
		args = append(args, "-itsoffset", seconds(offset), "-f", "concat", "-safe", "0", "-i", list)
		maps = append(maps, "-map", fmt.Sprintf("%d:%s:0", len(maps)/2, track.kind))
	}
	format := "webm"
	if strings.HasSuffix(out, ".mkv") {
		format = "matroska"
	}
	args = append(args, maps...)
	args = append(args, "-c", "copy", "-f", format, out)
	return run.run(ctx, "individual "+name, args...)
}

// concatList is an FFmpeg concat script: each piece lasts until the next
// one starts (the gap becomes a jump of the timeline) and is cut at its own
// end (a crashed worker's file holds more than its manifest says).
func concatList(pieces []*piece) string {
	var b strings.Builder
	b.WriteString("ffconcat version 1.0\n")
	for i, p := range pieces {
		until := p.end
		if i+1 < len(pieces) {
			until = pieces[i+1].start
		}
		fmt.Fprintf(&b, "file %s\nduration %s\noutpoint %s\n", concatQuote(p.file), seconds(until-p.start), seconds(p.end-p.start))
	}
	return b.String()
}

// writeZip writes the ZIP: the sync file first (compressed), then the media
// files (stored: they are compressed already).
func writeZip(out, jsonName string, sync *SyncFile, files []string) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	zw := zip.NewWriter(f)
	b, err := json.MarshalIndent(sync, "", "  ")
	if err != nil {
		return fmt.Errorf("render: encode sync file: %w", err)
	}
	w, err := zw.CreateHeader(&zip.FileHeader{Name: jsonName, Method: zip.Deflate, Modified: time.UnixMilli(sync.CreatedAt)})
	if err == nil {
		_, err = w.Write(b)
	}
	if err != nil {
		return fmt.Errorf("render: zip: %w", err)
	}
	for _, file := range files {
		if err := zipStore(zw, file); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("render: zip: %w", err)
	}
	return nil
}

func zipStore(zw *zip.Writer, file string) error {
	in, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("render: zip: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("render: zip: %w", err)
	}
	h, err := zip.FileInfoHeader(st)
	if err != nil {
		return fmt.Errorf("render: zip: %w", err)
	}
	h.Method = zip.Store
	w, err := zw.CreateHeader(h)
	if err == nil {
		_, err = io.Copy(w, in)
	}
	if err != nil {
		return fmt.Errorf("render: zip %s: %w", file, err)
	}
	return nil
}
