// Package recstorage keeps the files of finished recordings where masters
// serve them from: the recording path itself (OpenVidu's local storage), or
// an S3-compatible bucket (OpenVidu Pro's OPENVIDU_PRO_RECORDING_STORAGE=s3,
// recording.md "Uploading recordings to S3").
//
// Recorders render a recording into <recording path>/<id>/ and Publish it;
// masters Serve its files at /openvidu/recordings/<id>/<file> and Delete
// them with the recording. Both roles build the same Storage from the same
// configuration.
package recstorage

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is a file that is not stored.
var ErrNotFound = errors.New("recording file not found")

// Storage is where finished recordings live. id is a recording id (checked
// by the caller: never a path), file a base name.
type Storage interface {
	// Publish makes the files rendered into dir (<recording path>/<id>)
	// the recording's stored files. It returns once they are stored, or
	// with the error that made it give up (the local files are then kept).
	Publish(ctx context.Context, id, dir string) error
	// Serve answers a GET or HEAD of one stored file (byte ranges
	// included), or returns ErrNotFound having written nothing.
	Serve(w http.ResponseWriter, r *http.Request, id, file string) error
	// Delete removes every stored file of a recording; none is no error.
	Delete(ctx context.Context, id string) error
}

// Local keeps recordings in the recording path itself: what recorders
// render there is what masters serve, so every master and recorder must see
// the same directory (one host, or a shared volume).
type Local struct {
	// Path is the recording path, <Path>/<id>/<file>.
	Path string
}

var _ Storage = Local{}

// Publish does nothing: the rendered files are already in place.
func (Local) Publish(context.Context, string, string) error { return nil }

// Serve serves <Path>/<id>/<file> (http.ServeFile: ranges, If-Modified-Since).
func (l Local) Serve(w http.ResponseWriter, r *http.Request, id, file string) error {
	full := filepath.Join(l.Path, id, file)
	if st, err := os.Stat(full); err != nil || !st.Mode().IsRegular() {
		return ErrNotFound
	}
	http.ServeFile(w, r, full)
	return nil
}

// Delete removes <Path>/<id>.
func (l Local) Delete(_ context.Context, id string) error {
	return os.RemoveAll(filepath.Join(l.Path, id))
}

// files lists the regular files directly in dir, hidden ones aside.
func files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
