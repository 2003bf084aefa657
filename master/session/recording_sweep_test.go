package session

import (
	"context"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// TestSweepRecordings: no recording stays active without a recorder. A
// started recording whose lease nobody held for the bound is stopped
// (nodeCrashed; a later recorder renders it); one left stopped or starting
// another bound is failed and its job dropped; a leased one is left alone,
// as is any within the bound; jobs of gone recordings are dropped.
func TestSweepRecordings(t *testing.T) {
	ctx := context.Background()
	svcs, st := newTestServices(t, 1)
	svc := svcs[0]
	const bound = 200 * time.Millisecond
	create := func(sid protocol.SessionID, status string) string {
		t.Helper()
		if err := st.CreateSession(ctx, &store.Session{ID: sid, CreatedAt: store.NowMillis(), Life: 1}); err != nil {
			t.Fatal(err)
		}
		id := string(sid)
		if err := st.IndexRecording(ctx, id, store.NowMillis()); err != nil {
			t.Fatal(err)
		}
		err := st.UpdateRecording(ctx, id, func(tx *store.Tx) error {
			tx.Recording = &store.Recording{ID: id, SessionID: sid, Status: status, CreatedAt: store.NowMillis(), StartedAt: store.NowMillis()}
			if status != protocol.RecordingStopped {
				tx.Session.Recording = id
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	orphanStarted := create("ses_sweep_started", protocol.RecordingStarted)
	orphanStopped := create("ses_sweep_stopped", protocol.RecordingStopped)
	orphanStarting := create("ses_sweep_starting", protocol.RecordingStarting)
	leased := create("ses_sweep_leased", protocol.RecordingStarted)
	if err := st.IndexRecording(ctx, "ses_sweep_gone", store.NowMillis()); err != nil {
		t.Fatal(err)
	}
	lease := func() {
		if ok, err := st.AcquireRecordingLease(ctx, leased, "recorder_1", time.Minute); !ok || err != nil {
			t.Fatalf("lease: %v %v", ok, err)
		}
	}
	lease()
	status := func(id string) string {
		t.Helper()
		r, err := st.LoadRecording(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	seen := orphans{}
	sweep := func() { svc.sweepRecordings(ctx, seen, bound) }

	sweep() // first sight: nothing happens within the bound
	for _, id := range []string{orphanStarted, orphanStopped, orphanStarting, leased} {
		if got, err := st.LoadRecording(ctx, id); err != nil || got.Status == protocol.RecordingFailed || got.StoppedAt != 0 {
			t.Fatalf("%s changed within the bound: %+v %v", id, got, err)
		}
	}
	time.Sleep(bound + 50*time.Millisecond)
	sweep()
	r, err := st.LoadRecording(ctx, orphanStarted)
	if err != nil || r.Status != protocol.RecordingStopped || r.Reason != protocol.ReasonNodeCrashed {
		t.Errorf("started without a recorder: %+v %v, want stopped (nodeCrashed)", r, err)
	}
	sess, err := st.Load(ctx, "ses_sweep_started")
	if err != nil || sess.Session.Recording != "" {
		t.Errorf("session still recording after the stop: %v", err)
	}
	for _, id := range []string{orphanStopped, orphanStarting} {
		if got := status(id); got != protocol.RecordingFailed {
			t.Errorf("%s without a recorder: %s, want failed", id, got)
		}
	}
	if got := status(leased); got != protocol.RecordingStarted {
		t.Errorf("leased recording: %s, want started", got)
	}
	// The stopped one gets a new bound for a recorder to render it.
	sweep()
	if got := status(orphanStarted); got != protocol.RecordingStopped {
		t.Errorf("stopped recording failed before a new bound: %s", got)
	}
	time.Sleep(bound + 50*time.Millisecond)
	sweep()
	if got := status(orphanStarted); got != protocol.RecordingFailed {
		t.Errorf("stopped recording that no recorder rendered: %s, want failed", got)
	}
	jobs, err := st.RecordingJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0] != leased {
		t.Errorf("jobs left: %v, want only %s", jobs, leased)
	}
}
