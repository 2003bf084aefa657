package session_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/master/restapi"
	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/recordings"
	"github.com/chorus-rtc/chorus/shared/store"
)

// withRecording is a master with recording on.
func withRecording(c *session.Config) { c.RecordingDefaults = restapi.RecordingDefaults }

// recordingOf returns the session's recording (its first id), or nil.
func (e *env) recordingOf(sid protocol.SessionID) *store.Recording {
	e.t.Helper()
	r, err := e.st.LoadRecording(context.Background(), string(sid))
	if err != nil {
		return nil
	}
	return r
}

// destroyedReasons returns the reasons of a session's sessionDestroyed
// events, in order.
func (e *env) destroyedReasons(sid protocol.SessionID) []string {
	e.t.Helper()
	var out []string
	for _, ev := range e.events(sid) {
		if ev.Name == "sessionDestroyed" {
			out = append(out, ev.Reason)
		}
	}
	return out
}

// createSessionWith creates a session in the given recording mode, with
// default recording properties.
func (e *env) createSessionWith(svc *session.Service, sid protocol.SessionID, mode, defaults string) {
	e.t.Helper()
	props := store.SessionProperties{CustomSessionID: string(sid), MediaMode: "ROUTED", RecordingMode: mode}
	if defaults != "" {
		props.DefaultRecordingProperties = json.RawMessage(defaults)
	}
	if _, err := svc.CreateSession(context.Background(), props, ""); err != nil {
		e.t.Fatal(err)
	}
}

// TestAlwaysRecordingStartsOnFirstPublication: a session in recordingMode
// ALWAYS is recorded, with its default recording properties, from the
// moment its first participant publishes (recording.md); joining alone or
// a second publication start nothing, and neither do MANUAL sessions or a
// master with recording off.
func TestAlwaysRecordingStartsOnFirstPublication(t *testing.T) {
	e := newEnv(t, 1)
	e.adopt("media_1")
	svc := e.service("master_1.1", withRecording)
	b := newBrowser(t)

	const sid = "ses_always"
	e.createSessionWith(svc, sid, "ALWAYS", `{"outputMode":"INDIVIDUAL","name":"auto"}`)
	first, second := e.join(svc, sid), e.join(svc, sid)
	if r := e.recordingOf(sid); r != nil {
		t.Fatalf("recording before anybody published: %+v", r)
	}
	e.publish(svc, b, sid, first.ID)
	r := e.recordingOf(sid)
	if r == nil {
		t.Fatal("no recording after the first publication")
	}
	if r.Status != protocol.RecordingStarting || r.OutputMode != protocol.OutputIndividual || r.Name != "auto" || !r.HasAudio || !r.HasVideo {
		t.Errorf("recording %+v, want starting, INDIVIDUAL, named auto, audio and video (the session's defaults)", r)
	}
	if got := e.load(sid).Session.Recording; got != r.ID {
		t.Errorf("session records %q, want %q", got, r.ID)
	}
	e.publish(svc, b, sid, second.ID)
	recs, err := e.st.ListRecordings(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Errorf("%d recordings after the second publication, want 1", len(recs))
	}

	for _, tc := range []struct {
		name string
		sid  protocol.SessionID
		mode string
		svc  *session.Service
	}{
		{"MANUAL session", "ses_manual", "MANUAL", svc},
		{"recording off", "ses_always_off", "ALWAYS", e.service("master_2.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.in(t)
			e.createSessionWith(tc.svc, tc.sid, tc.mode, "")
			e.publish(tc.svc, b, tc.sid, e.join(tc.svc, tc.sid).ID)
			if r := e.recordingOf(tc.sid); r != nil {
				t.Errorf("recorded: %+v", r)
			}
		})
	}
}

// TestRecordingAutostop: OpenVidu's automatic stop of recordings
// (recording.md), with a 400 ms timeout. In a MANUAL session with nobody
// publishing the recording stops (automaticStop) and the session stays;
// a publication within the timeout cancels it; a session left empty stays
// open with its recording until the timeout, then the recording stops and
// the session closes (sessionDestroyed automaticStop).
func TestRecordingAutostop(t *testing.T) {
	const timeout = 400 * time.Millisecond
	e := newEnv(t, 1)
	e.adopt("media_1")
	svc := e.service("master_1.1", withRecording)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- svc.RunSweeper(ctx, session.SweepConfig{Interval: 50 * time.Millisecond, RecordingAutostop: true, RecordingAutostopTimeout: timeout})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	b := newBrowser(t)

	// start records a session as a recorder would: started at once.
	start := func(e *env, sid protocol.SessionID) string {
		e.t.Helper()
		go func() {
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := recordings.MarkStarted(context.Background(), e.st, string(sid), store.NowMillis()); err == nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		rec, err := svc.StartRecording(context.Background(), sid, session.RecordingProperties{OutputMode: protocol.OutputComposed, HasAudio: true, HasVideo: true}, 5*time.Second)
		if err != nil {
			e.t.Fatal(err)
		}
		return rec.ID
	}
	status := func(e *env, id string) *store.Recording {
		e.t.Helper()
		r, err := e.st.LoadRecording(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		return r
	}
	stoppedAutomatically := func(e *env, id string) {
		e.t.Helper()
		e.waitFor("the recording's automatic stop", func() bool { return status(e, id).Status == protocol.RecordingStopped })
		if r := status(e, id); r.Reason != protocol.ReasonAutomaticStop {
			e.t.Errorf("stopped with reason %q, want automaticStop", r.Reason)
		}
	}

	t.Run("MANUAL, nobody publishing", func(t *testing.T) {
		e := e.in(t)
		const sid = "ses_autostop_nopub"
		e.createSession(svc, sid)
		e.join(svc, sid)
		began := time.Now() // the countdown may begin before start returns
		id := start(e, sid)
		stoppedAutomatically(e, id)
		if waited := time.Since(began); waited < timeout {
			t.Errorf("stopped %s after the start, before the %s timeout", waited, timeout)
		}
		if _, err := e.st.Load(context.Background(), sid); err != nil {
			t.Errorf("session gone with a participant in it: %v", err)
		}
	})

	t.Run("a publication cancels it", func(t *testing.T) {
		e := e.in(t)
		const sid = "ses_autostop_cancel"
		e.createSession(svc, sid)
		p := e.join(svc, sid)
		id := start(e, sid)
		e.waitFor("the countdown", func() bool { return status(e, id).AutostopSince != 0 })
		e.publish(svc, b, sid, p.ID)
		e.waitFor("the countdown's end", func() bool { return status(e, id).AutostopSince == 0 })
		time.Sleep(2 * timeout)
		if r := status(e, id); r.Status != protocol.RecordingStarted {
			t.Errorf("recording %s (%s) while somebody publishes", r.Status, r.Reason)
		}
	})

	t.Run("last participant left", func(t *testing.T) {
		e := e.in(t)
		const sid = "ses_autostop_empty"
		e.createSession(svc, sid)
		p := e.join(svc, sid)
		e.publish(svc, b, sid, p.ID)
		id := start(e, sid)
		left := time.Now()
		if err := svc.Leave(context.Background(), sid, p.ID); err != nil {
			t.Fatal(err)
		}
		// Open, and still recording, during the timeout.
		snap, err := e.st.Load(context.Background(), sid)
		if err != nil {
			t.Fatalf("session closed by the last departure while recorded: %v", err)
		}
		if snap.Session.Recording != id || status(e, id).Status != protocol.RecordingStarted {
			t.Fatalf("recording %q (%s) once the last participant left, want %s started", snap.Session.Recording, status(e, id).Status, id)
		}
		stoppedAutomatically(e, id)
		if waited := time.Since(left); waited < timeout {
			t.Errorf("stopped %s after the departure, before the %s timeout", waited, timeout)
		}
		e.waitFor("the session to close", func() bool {
			_, err := e.st.Load(context.Background(), sid)
			return err != nil
		})
		destroyed := e.destroyedReasons(sid)
		if len(destroyed) != 1 || destroyed[0] != protocol.ReasonAutomaticStop {
			t.Errorf("sessionDestroyed reasons %v, want [automaticStop]", destroyed)
		}
	})

	t.Run("a stop while left empty closes the session", func(t *testing.T) {
		e := e.in(t)
		const sid = "ses_autostop_stopped"
		e.createSession(svc, sid)
		p := e.join(svc, sid)
		e.publish(svc, b, sid, p.ID)
		id := start(e, sid)
		if err := svc.Leave(context.Background(), sid, p.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.StopRecording(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.Load(context.Background(), sid); err == nil {
			t.Fatal("session left empty still open once its recording stopped")
		}
		destroyed := e.destroyedReasons(sid)
		if len(destroyed) != 1 || destroyed[0] != protocol.ReasonLastParticipantLeft {
			t.Errorf("sessionDestroyed reasons %v, want [lastParticipantLeft]", destroyed)
		}
	})
}
