package eventdelivery

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestCDRFilesAreOwnerOnly: the CDR holds personal data (participants' IPs,
// client data), so the directory OpenCDR creates is 0700 and its files
// 0600, an existing world-readable file included.
func TestCDRFilesAreOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cdr")
	w, err := OpenCDR(dir, "master_1")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("sessionCreated", []byte(`{"sessionId":"s","timestamp":1}`)); err != nil {
		t.Fatal(err)
	}
	name := w.f.Name()
	mode := func(p string) fs.FileMode {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	if m := mode(dir); m != 0o700 {
		t.Errorf("CDR directory mode %o, want 700", m)
	}
	if m := mode(name); m != 0o600 {
		t.Errorf("CDR file mode %o, want 600", m)
	}
	// A file left world-readable (by an older version) is closed to others
	// when the writer opens it again (the next start the same second, or
	// the same day's file).
	if err := os.Chmod(name, 0o644); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	_ = w.f.Close()
	w.f, w.day = nil, ""
	err = w.rotateLocked()
	w.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if w.f.Name() != name {
		t.Fatalf("reopened %s, want %s", w.f.Name(), name)
	}
	if m := mode(name); m != 0o600 {
		t.Errorf("reopened CDR file mode %o, want 600", m)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
