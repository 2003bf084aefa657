package session

import (
	"context"
	"errors"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/recordings"
	"github.com/chorus-rtc/chorus/shared/store"
)

// What OpenVidu does with recordings by itself (recording.md): sessions in
// recordingMode ALWAYS are recorded from their first publication, and
// recordings stop on their own once their session is left empty, or has
// nobody publishing in MANUAL mode, for OPENVIDU_RECORDING_AUTOSTOP_TIMEOUT.
// Both live in Redis only (the recording's AutostopSince, the session's
// Recording): whichever master runs the next step, after any crash.

// recordingModeAlways is SessionProperties.recordingMode's ALWAYS.
const recordingModeAlways = "ALWAYS"

// firstPublication reports whether c's publication, just made live in tx,
// should start an ALWAYS session's recording: the session is not being
// recorded and nobody else publishes.
func firstPublication(tx *store.Tx, c *store.Connection) bool {
	if tx.Session.Properties.RecordingMode != recordingModeAlways || tx.Session.Recording != "" ||
		tx.Session.Properties.MediaMode == "RELAYED" {
		return false
	}
	for _, o := range tx.Conns {
		if o.ID != c.ID && o.Active() && !o.Recorder && o.Publisher != nil && o.Publisher.Live() {
			return false
		}
	}
	return true
}

// startAlwaysRecording starts recording an ALWAYS session whose first
// participant published, with the session's defaultRecordingProperties.
// Nobody waits for it: as in OpenVidu, its failures are told by the
// recordingStatusChanged event (and the recording sweeper fails it if no
// recorder takes it).
func (s *Service) startAlwaysRecording(ctx context.Context, sid protocol.SessionID) {
	if s.cfg.RecordingDefaults == nil {
		return
	}
	ctx, cancel := background(ctx)
	defer cancel()
	snap, err := s.store.Load(ctx, sid)
	if err != nil {
		return
	}
	props, err := s.cfg.RecordingDefaults(snap.Session.Properties.DefaultRecordingProperties)
	if err != nil {
		s.log.Warn("recordingMode ALWAYS: the session's default recording properties", "session", sid, "err", err)
		return
	}
	rec, err := s.newRecording(ctx, sid, props)
	var e *Error
	if errors.As(err, &e) && e.Kind == RecordingConflict {
		return // another publication started it first
	}
	if err != nil {
		s.log.Warn("recordingMode ALWAYS: start the recording", "session", sid, "err", err)
		return
	}
	s.log.Info("recording started by the session's first publication (recordingMode ALWAYS)", "session", sid, "recording", rec.ID)
}

// closeIfLeftEmpty closes a session that stayed open only for its
// recording (its last participant left while it was recorded:
// removeParticipant) once it is no longer recorded, whatever ended the
// recording (a REST stop, a failure), with reason lastParticipantLeft.
func (s *Service) closeIfLeftEmpty(ctx context.Context, sid protocol.SessionID) {
	leftEmpty := func(tx *store.Tx) bool {
		return tx.Session.Recording == "" && tx.Session.ActivatedAt != 0 && len(participants(activeConns(tx.SortedConns()))) == 0
	}
	closed, err := s.closeSessionIf(ctx, sid, protocol.ReasonLastParticipantLeft, leftEmpty)
	if err != nil && !IsKind(err, SessionNotFound) && ctx.Err() == nil {
		s.log.Warn("close a session left empty once its recording ended", "session", sid, "err", err)
	}
	if closed {
		s.log.Info("session closed: its last participant left while it was recorded, and the recording ended", "session", sid)
	}
}

// autostopRecordings runs one step of the automatic stop of every active
// recording (sweeper): the timeout starts when the recording's session has
// no participant left, or no publisher in MANUAL mode; it is cancelled by
// a publication; when it runs out the recording stops with reason
// automaticStop, and a session with nobody left closes with the same
// reason (recording.md "Automatic stop of recordings").
func (s *Service) autostopRecordings(ctx context.Context, timeout time.Duration) {
	ids, err := s.store.RecordingJobs(ctx)
	if err != nil {
		return
	}
	for _, id := range ids {
		s.autostopRecording(ctx, id, timeout)
	}
}

// autostopPending reports whether a session's recording counts down to
// its automatic stop, and whether anybody is left.
func autostopPending(sess *store.Session, conns map[protocol.ConnectionID]*store.Connection) (pending, empty bool) {
	participants, publishers := 0, 0
	for _, c := range conns {
		if !c.Active() || c.Recorder {
			continue
		}
		participants++
		if c.Publisher != nil && c.Publisher.Live() {
			publishers++
		}
	}
	empty = participants == 0
	return empty || (sess.Properties.RecordingMode != recordingModeAlways && publishers == 0), empty
}

func (s *Service) autostopRecording(ctx context.Context, id string, timeout time.Duration) {
	// A read first: most passes change nothing and write nothing.
	rec, err := s.store.LoadRecording(ctx, id)
	if err != nil || rec.Status != protocol.RecordingStarted {
		return
	}
	snap, err := s.store.Load(ctx, rec.SessionID)
	if err != nil || snap.Session.Recording != id {
		return
	}
	now := store.NowMillis()
	pending, _ := autostopPending(snap.Session, snap.Conns)
	due := pending && rec.AutostopSince != 0 && now-rec.AutostopSince >= timeout.Milliseconds()
	if !due && pending == (rec.AutostopSince != 0) {
		return
	}
	stop, empty := false, false
	err = s.store.UpdateRecording(ctx, id, func(tx *store.Tx) error {
		stop, empty = false, false
		r := tx.Recording
		if r == nil || r.Status != protocol.RecordingStarted || tx.Session == nil || tx.Session.Recording != id {
			return nil
		}
		var pending bool
		pending, empty = autostopPending(tx.Session, tx.Conns)
		switch {
		case !pending:
			r.AutostopSince = 0
		case r.AutostopSince == 0:
			r.AutostopSince = now
		default:
			stop = now-r.AutostopSince >= timeout.Milliseconds()
		}
		return nil
	})
	if err != nil || !stop {
		if err != nil && ctx.Err() == nil {
			s.log.Warn("recording automatic stop", "recording", id, "err", err)
		}
		if err == nil {
			s.log.Debug("recording automatic stop countdown", "recording", id, "counting", pending, "empty", empty)
		}
		return
	}
	if _, err := recordings.Stop(ctx, s.store, id, protocol.ReasonAutomaticStop, now); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("recording automatic stop", "recording", id, "err", err)
		}
		return
	}
	s.log.Info("recording stopped automatically", "recording", id, "session", rec.SessionID, "timeout", timeout, "empty", empty)
	if empty {
		// Closed only if still empty: somebody may have joined meanwhile.
		stillEmpty := func(tx *store.Tx) bool { return len(participants(activeConns(tx.SortedConns()))) == 0 }
		if _, err := s.closeSessionIf(ctx, rec.SessionID, protocol.ReasonAutomaticStop, stillEmpty); err != nil && !IsKind(err, SessionNotFound) {
			s.log.Warn("close a session whose recording stopped automatically", "session", rec.SessionID, "err", err)
		}
	}
}
