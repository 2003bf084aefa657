package store

import (
	"context"
	"testing"
	"time"
)

// TestRecordingIndexedBeforeCommit: a recording is indexed (listing and
// job) before the transaction that creates it commits. An entry whose
// recording does not exist yet is kept while young (a listing or a
// recorder passing then must not drop a recording being started: a
// recorder that did left it starting forever), and is a leftover once
// older than RecordingCommitGrace.
func TestRecordingIndexedBeforeCommit(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.IndexRecording(ctx, "young", NowMillis()); err != nil {
		t.Fatal(err)
	}
	if err := s.IndexRecording(ctx, "old", time.Now().Add(-2*RecordingCommitGrace).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id       string
		leftover bool
	}{{"young", false}, {"old", true}, {"never-indexed", true}} {
		if got := s.RecordingLeftover(ctx, tc.id); got != tc.leftover {
			t.Errorf("RecordingLeftover(%s) = %v, want %v", tc.id, got, tc.leftover)
		}
	}
	if list, err := s.ListRecordings(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListRecordings = %v, %v; want none (nothing committed)", list, err)
	}
	ids, err := s.Sessions.rdb.ZRange(ctx, s.Sessions.recordingsKey(), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != "young" {
		t.Errorf("index after a listing: %v, want the young entry only", ids)
	}
	// The young one commits: listed.
	if err := s.CreateSession(ctx, &Session{ID: "young", CreatedAt: NowMillis(), Life: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateRecording(ctx, "young", func(tx *Tx) error {
		tx.Recording = &Recording{ID: "young", SessionID: "young", Status: "starting", CreatedAt: NowMillis()}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if list, err := s.ListRecordings(ctx); err != nil || len(list) != 1 || list[0].ID != "young" {
		t.Errorf("ListRecordings after the commit = %v, %v", list, err)
	}
}
