package recordings_test

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/recordings"
	"github.com/chorus-rtc/chorus/shared/redistest"
	"github.com/chorus-rtc/chorus/shared/store"
)

// newRecording stores a session with one participant and a recording with
// its hidden recorder connection in a status, the connection in connStatus.
func newRecording(t *testing.T, st *store.Store, sid protocol.SessionID, status, connStatus string) *store.Recording {
	t.Helper()
	ctx := context.Background()
	if err := st.CreateSession(ctx, &store.Session{ID: sid, CreatedAt: store.NowMillis(), Life: 1}); err != nil {
		t.Fatal(err)
	}
	rec := &store.Recording{ID: string(sid), SessionID: sid, Status: status, CreatedAt: store.NowMillis(),
		RecorderConnection: "con_recorder", RecorderToken: "wss://localhost:4443?sessionId=" + string(sid) + "&token=tok_first&edition=pro"}
	err := st.UpdateRecording(ctx, rec.ID, func(tx *store.Tx) error {
		tx.Recording = rec
		tx.Session.Recording = rec.ID
		tx.Conns["con_alice"] = &store.Connection{ID: "con_alice", SessionID: sid, Status: store.StatusActive}
		tx.Conns["con_recorder"] = &store.Connection{ID: "con_recorder", SessionID: sid, Status: connStatus, Recorder: true,
			TokenID: "tok_first", Token: rec.RecorderToken}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestPrepareRecorder: a worker taking over a recording whose recorder
// connection was used gets a fresh hidden connection with its own token in
// the same token URL; a pending one is kept; a stopped recording has none.
func TestPrepareRecorder(t *testing.T) {
	ctx := context.Background()
	st := store.New(store.Config{Redis: redistest.Start(t).Client(t), ClusterID: "t"})
	tests := []struct {
		name, status, connStatus string
		fresh                    bool
		err                      error
	}{
		{"starting, token unused", protocol.RecordingStarting, store.StatusPending, false, nil},
		{"started, token used by a dead worker", protocol.RecordingStarted, store.StatusActive, true, nil},
		{"starting, token used by a worker that died before started", protocol.RecordingStarting, store.StatusActive, true, nil},
		{"stopped", protocol.RecordingStopped, store.StatusActive, false, recordings.ErrNotStarted},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sid := protocol.SessionID("ses_prep" + string(rune('a'+i)))
			newRecording(t, st, sid, tt.status, tt.connStatus)
			got, err := recordings.PrepareRecorder(ctx, st, string(sid), store.NowMillis())
			if !errors.Is(err, tt.err) {
				t.Fatalf("PrepareRecorder: %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			snap, err := st.Load(ctx, sid)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := st.LoadRecording(ctx, string(sid))
			if err != nil {
				t.Fatal(err)
			}
			if stored.RecorderConnection != got.RecorderConnection || stored.RecorderToken != got.RecorderToken {
				t.Errorf("returned %+v, stored %+v", got, stored)
			}
			if !tt.fresh {
				if got.RecorderConnection != "con_recorder" || got.Takeovers != 0 || len(snap.Conns) != 2 {
					t.Errorf("unused token replaced: %+v, %d connections", got, len(snap.Conns))
				}
				return
			}
			c := snap.Conns[got.RecorderConnection]
			if got.RecorderConnection == "con_recorder" || c == nil || !c.Recorder || c.Status != store.StatusPending || got.Takeovers != 1 {
				t.Fatalf("no fresh recorder connection: %+v, connection %+v", got, c)
			}
			u, err := url.Parse(got.RecorderToken)
			if err != nil || u.Host != "localhost:4443" || u.Query().Get("sessionId") != string(sid) ||
				u.Query().Get("token") != c.TokenID || c.TokenID == "tok_first" || c.Token != got.RecorderToken || u.Query().Get("edition") != "pro" {
				t.Errorf("fresh token %q (connection token id %q)", got.RecorderToken, c.TokenID)
			}
			// A second call (the worker's join failed) keeps the fresh, unused one.
			again, err := recordings.PrepareRecorder(ctx, st, string(sid), store.NowMillis())
			if err != nil || again.RecorderConnection != got.RecorderConnection || again.Takeovers != 1 {
				t.Errorf("second PrepareRecorder: %+v, %v", again, err)
			}
		})
	}
}
