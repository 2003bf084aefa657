package eventdelivery

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chorus-rtc/chorus/master/events"
)

// cdrRetention is how long CDR files are kept, as OpenVidu (MaxHistory 30).
const cdrRetention = 30 * 24 * time.Hour

// CDRFile writes OpenVidu's CDR: JSON Lines, one {"eventName": {...}} object
// a line, in CDR.<yyyy-MM-dd>_<HH-mm-ss>.<master id>.log (the date of the
// day, the time the master started), a new file every day, files older than
// 30 days removed. Each master writes its own file: the one that delivers an
// event writes it.
type CDRFile struct {
	dir    string
	suffix string // _<HH-mm-ss>.<master id>.log
	mu     sync.Mutex
	day    string
	f      *os.File
	now    func() time.Time
}

// OpenCDR prepares the directory (created if missing) and checks that it can
// be written. CDR records hold personal data (participants' IPs, client data,
// locations): a directory it creates is readable by its owner only (0700),
// and so are the files (0600, also enforced on an existing file).
func OpenCDR(dir, masterID string) (*CDRFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("CDR path %s: Is not a valid writable file system path: %w", dir, err)
	}
	started := time.Now()
	w := &CDRFile{dir: dir, suffix: "_" + started.Format("15-04-05") + "." + masterID + ".log", now: time.Now}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.rotateLocked(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *CDRFile) rotateLocked() error {
	day := w.now().Format("2006-01-02")
	if day == w.day && w.f != nil {
		return nil
	}
	name := filepath.Join(w.dir, "CDR."+day+w.suffix)
	f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		err = f.Chmod(0o600) // a file an older version made world-readable
		if err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("OpenVidu Server does not have permissions to write on path %s: %w", w.dir, err)
	}
	if w.f != nil {
		_ = w.f.Close()
	}
	w.f, w.day = f, day
	w.removeOld()
	return nil
}

// removeOld deletes CDR files older than the retention.
func (w *CDRFile) removeOld() {
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "CDR.") || !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		if info, err := e.Info(); err == nil && w.now().Sub(info.ModTime()) > cdrRetention {
			_ = os.Remove(filepath.Join(w.dir, e.Name()))
		}
	}
}

// Write appends the event's line.
func (w *CDRFile) Write(name string, body []byte) error {
	line, err := events.CDRLine(name, body)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.rotateLocked(); err != nil {
		return err
	}
	if _, err := w.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write CDR: %w", err)
	}
	return nil
}

// Close closes the current file.
func (w *CDRFile) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
