package devcluster

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestExposedDevClusterNeedsARealSecret: `chorus dev --listen-host 0.0.0.0`
// with the development secret stops before starting anything, saying how
// to pass one.
func TestExposedDevClusterNeedsARealSecret(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), Config{
		Binary: "/nonexistent/chorus", Port: 1, ListenHost: "0.0.0.0", Secret: "MY_SECRET",
		Masters: 1, MediaNodes: 1, MediaIP: "127.0.0.1", ClusterID: "t",
		Output: &out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err == nil {
		t.Fatal("started")
	}
	for _, want := range []string{"--secret", "MY_SECRET", "--listen-host 0.0.0.0", "openssl rand -hex 24"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if out.Len() != 0 {
		t.Errorf("something started: %s", out.String())
	}
}
