package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/recorder/render"
	"github.com/chorus-rtc/chorus/recorder/worker"
	"github.com/chorus-rtc/chorus/sdk/openvidu"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/recordings"
	"github.com/chorus-rtc/chorus/shared/store"
)

// closingStore is the cluster's store, but once armed, the next read of a
// session first stops its recording and then finds the session gone: the
// automatic stop of an empty session (stop the recording, close the
// session) landing between the worker's read of the recording (still
// started) and its read of the session.
type closingStore struct {
	worker.Store
	recording string
	armed     atomic.Bool
}

func (s *closingStore) Load(ctx context.Context, sid protocol.SessionID) (*store.Snapshot, error) {
	if s.armed.CompareAndSwap(true, false) {
		if _, err := recordings.Stop(ctx, s.Store, s.recording, "automaticStop", store.NowMillis()); err != nil {
			return nil, err
		}
		return nil, store.ErrNotFound
	}
	return s.Store.Load(ctx, sid)
}

// TestSessionClosedAfterItsRecordingStopped: a recording stopped by
// whatever closed its session, just before the worker saw the session
// gone, is rendered (ready), not failed (it failed: the worker's own stop
// found it no longer started).
func TestSessionClosedAfterItsRecordingStopped(t *testing.T) {
	recPath := t.TempDir()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1, Configure: func(cfg *config.Config) {
		cfg.Recording.Enabled, cfg.Recording.Path = true, recPath
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ov, err := openvidu.New(openvidu.Config{URL: c.MasterURLs[0], Secret: clustertest.Secret})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ov.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: "closing"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ov.CreateConnection(ctx, sess.ID, openvidu.ConnectionProperties{Role: "PUBLISHER"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := participant.Join(ctx, participant.Config{Token: conn.Token, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pub, err := p.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
	if err != nil {
		t.Fatal(err)
	}
	sending, stopSending := context.WithCancel(ctx)
	defer stopSending()
	go pub.SendSynthetic(sending, participant.DefaultVideo)

	st := &closingStore{Store: c.Store, recording: sess.ID}
	r, err := render.New(render.Config{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Store: st, Renderer: r, ID: "recorder_closing", Path: recPath,
		WorkDir: filepath.Join(recPath, ".work"), LoopbackOnly: true, Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() {
		stopWorker()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("worker: %v", err)
		}
	}()

	req, _ := http.NewRequestWithContext(ctx, "POST", c.MasterURLs[0]+"/openvidu/api/recordings/start",
		strings.NewReader(`{"session":"`+sess.ID+`","name":"closing"}`))
	req.SetBasicAuth("OPENVIDUAPP", clustertest.Secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rec protocol.Recording
	err = json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("start the recording: %d %v", resp.StatusCode, err)
	}
	waitStatus := func(want string) *store.Recording {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			cur, err := c.Store.LoadRecording(ctx, rec.ID)
			if err == nil && cur.Status == want {
				return cur
			}
			if time.Now().After(deadline) || err == nil && cur.Status == protocol.RecordingFailed {
				t.Fatalf("recording %s: %+v (%v), want %s", rec.ID, cur, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitStatus(protocol.RecordingStarted)
	time.Sleep(2 * time.Second) // some media captured
	st.armed.Store(true)
	ready := waitStatus(protocol.RecordingReady)
	if ready.Reason != "automaticStop" || ready.Size == 0 {
		t.Errorf("ready recording %+v: want the automatic stop's reason and a file", ready)
	}
}
