// Package recordings is the life of an OpenVidu recording, shared by the
// masters (REST: start, stop, delete) and the recorders (started, ready,
// failed). Every transition commits, in one transaction of the session's
// slot (store.Sessions.UpdateRecording), the Recording, the participants'
// JSON-RPC notifications (recordingStarted, recordingStopped) and the
// recordingStatusChanged event, so no crash loses one or emits one for a
// change that did not happen.
//
// Statuses (REST-API.md "The Recording object"):
//
//	starting ──recorder joined──▶ started ──stop──▶ stopped ──rendered──▶ ready
//	    └──────────no recorder in time, or the recorder failed──────────▶ failed
package recordings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Errors of the transitions.
var (
	// ErrNotFound: no recording with that id.
	ErrNotFound = errors.New("recording not found")
	// ErrStarting: a starting recording cannot be stopped yet (406).
	ErrStarting = errors.New("recording is starting")
	// ErrNotStarted: the recording is not started (stopped, ready or failed).
	ErrNotStarted = errors.New("recording is not started")
)

// Store is what the transitions need of the store.
type Store interface {
	UpdateRecording(ctx context.Context, id string, fn func(tx *store.Tx) error) error
	RegisterEventStream(ctx context.Context, sid protocol.SessionID) error
}

// StatusChanged is the recordingStatusChanged event of r's current status
// (openvidu-server-webhook.md "recordingStatusChanged"; OpenVidu's
// CDREventRecordingStatusChanged): startTime is the recording's createdAt,
// duration (seconds) and size (bytes) are 0 until ready, reason only once
// stopped; resolution, frameRate and recordingLayout only for COMPOSED with
// video. An eventId is added, as for every Chorus event.
func StatusChanged(now int64, r *store.Recording) store.StoredEvent {
	o := protocol.Object{}.
		With("sessionId", r.SessionID).
		With("uniqueSessionId", fmt.Sprintf("%s_%d", r.SessionID, r.SessionCreatedAt)).
		With("timestamp", now).
		With("startTime", r.CreatedAt).
		With("duration", r.Duration)
	if r.Reason != "" && r.Status != protocol.RecordingStarted {
		o = o.With("reason", r.Reason)
	}
	o = o.With("id", r.ID).With("name", r.Name).With("outputMode", r.OutputMode)
	if r.OutputMode != protocol.OutputIndividual && r.HasVideo {
		o = o.With("resolution", r.Resolution).With("frameRate", r.FrameRate).With("recordingLayout", r.RecordingLayout)
	}
	o = o.With("hasAudio", r.HasAudio).With("hasVideo", r.HasVideo).With("size", r.Size).With("status", r.Status)
	id := protocol.NewEventID()
	body, err := json.Marshal(o.With("eventId", id).With("event", EventName))
	if err != nil {
		panic(fmt.Sprintf("recordings: encode event: %v", err)) // plain values: cannot fail
	}
	return store.StoredEvent{ID: id, Name: EventName, Body: body}
}

// EventName is the webhook/CDR event of every transition.
const EventName = "recordingStatusChanged"

// notifyParticipants sends a recording notification to every participant
// but recorders.
func notifyParticipants(tx *store.Tx, method string, n protocol.RecordingNotification) error {
	for _, c := range tx.SortedConns() {
		if c.Active() && !c.Recorder {
			if err := tx.Notify(c.ID, method, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// MarkStarted moves a starting recording to started (a recorder receives
// the session's streams): StartedAt is now, the participants get
// recordingStarted, the event is emitted. A recording that is no longer
// starting is returned unchanged (a stop or a failure came first).
func MarkStarted(ctx context.Context, st Store, id string, now int64) (*store.Recording, error) {
	var out *store.Recording
	err := update(ctx, st, id, func(tx *store.Tx) error {
		r := tx.Recording
		if r == nil {
			return ErrNotFound
		}
		out = r
		if r.Status != protocol.RecordingStarting {
			return nil
		}
		r.Status, r.StartedAt = protocol.RecordingStarted, now
		tx.Emit(StatusChanged(now, r))
		return notifyParticipants(tx, protocol.NotifyRecordingStarted, protocol.RecordingNotification{ID: r.ID, Name: r.Name})
	})
	return out, err
}

// Stop moves a started recording to stopped with reason (OpenVidu's
// EndReason): StoppedAt is now, the session may be recorded again, the
// participants get recordingStopped, the event is emitted. ErrStarting
// while it is starting, ErrNotStarted once stopped.
func Stop(ctx context.Context, st Store, id, reason string, now int64) (*store.Recording, error) {
	var out *store.Recording
	err := update(ctx, st, id, func(tx *store.Tx) error {
		r := tx.Recording
		if r == nil {
			return ErrNotFound
		}
		switch r.Status {
		case protocol.RecordingStarting:
			return ErrStarting
		case protocol.RecordingStarted:
		default:
			return ErrNotStarted
		}
		r.Status, r.StoppedAt, r.Reason = protocol.RecordingStopped, now, reason
		out = r
		if tx.Session != nil && tx.Session.Recording == r.ID {
			tx.Session.Recording = ""
		}
		tx.Emit(StatusChanged(now, r))
		return notifyParticipants(tx, protocol.NotifyRecordingStopped, protocol.RecordingNotification{ID: r.ID, Name: r.Name, Reason: reason})
	})
	return out, err
}

// Result is what a recorder made of a stopped recording.
type Result struct {
	File     string  // the output's name in <recording path>/<id>/
	Size     int64   // bytes
	Duration float64 // seconds
	// Gaps are the stretches of streams missing from the output.
	Gaps []protocol.RecordingGap
}

// Finish moves a stopped recording to ready with its output (the event
// carries size and duration).
func Finish(ctx context.Context, st Store, id string, res Result, now int64) (*store.Recording, error) {
	var out *store.Recording
	err := update(ctx, st, id, func(tx *store.Tx) error {
		r := tx.Recording
		if r == nil {
			return ErrNotFound
		}
		if r.Status != protocol.RecordingStopped {
			return fmt.Errorf("finish recording %s: %w (%s)", id, ErrNotStarted, r.Status)
		}
		r.Status, r.File, r.Size, r.Duration, r.Gaps = protocol.RecordingReady, res.File, res.Size, res.Duration, res.Gaps
		out = r
		tx.Emit(StatusChanged(now, r))
		return nil
	})
	return out, err
}

// Fail marks a recording failed, whatever its status but ready: the session
// may be recorded again, its recorder connection is removed, participants
// of a started recording get recordingStopped, the event is emitted. A
// ready or failed recording is left as it is.
func Fail(ctx context.Context, st Store, id, why string, now int64) (*store.Recording, error) {
	var out *store.Recording
	err := update(ctx, st, id, func(tx *store.Tx) error {
		r := tx.Recording
		if r == nil {
			return ErrNotFound
		}
		out = r
		if r.Status == protocol.RecordingReady || r.Status == protocol.RecordingFailed {
			return nil
		}
		wasStarted := r.Status == protocol.RecordingStarted
		r.Status, r.Error = protocol.RecordingFailed, why
		if r.StoppedAt == 0 {
			r.StoppedAt = now
		}
		if tx.Session != nil && tx.Session.Recording == r.ID {
			tx.Session.Recording = ""
		}
		if c := tx.Conns[r.RecorderConnection]; c != nil && !c.Active() {
			delete(tx.Conns, c.ID) // never joined; a joined one leaves by itself
		}
		tx.Emit(StatusChanged(now, r))
		if wasStarted {
			return notifyParticipants(tx, protocol.NotifyRecordingStopped, protocol.RecordingNotification{ID: r.ID, Name: r.Name, Reason: r.Reason})
		}
		return nil
	})
	return out, err
}

func update(ctx context.Context, st Store, id string, fn func(tx *store.Tx) error) error {
	if err := st.RegisterEventStream(ctx, store.RecordingSessionID(id)); err != nil {
		return fmt.Errorf("register event stream of recording %s: %w", id, err)
	}
	return st.UpdateRecording(ctx, id, fn)
}

// PrepareRecorder returns the recording with a recorder connection a worker
// can join with. A recorder token is single use (the connection it names
// turns active on joinRoom), so a worker that takes over a recording whose
// previous worker joined and died (its lease expired) gets, in the
// recording's transaction, a fresh hidden recorder connection: a new
// connection id and token, its token URL the old one with the new token
// (same cluster URL and session). The old connection is left to the masters,
// which evict it as any participant whose socket is gone. A recording whose
// recorder connection is still pending is returned unchanged; one that is
// neither starting nor started gives ErrNotStarted.
func PrepareRecorder(ctx context.Context, st Store, id string, now int64) (*store.Recording, error) {
	var out *store.Recording
	err := update(ctx, st, id, func(tx *store.Tx) error {
		r := tx.Recording
		if r == nil {
			return ErrNotFound
		}
		if r.Status != protocol.RecordingStarting && r.Status != protocol.RecordingStarted {
			return fmt.Errorf("prepare recorder of %s: %w (%s)", id, ErrNotStarted, r.Status)
		}
		out = r
		if c := tx.Conns[r.RecorderConnection]; c != nil && c.Status == store.StatusPending {
			return nil
		}
		if tx.Session == nil {
			return fmt.Errorf("prepare recorder of %s: session %s: %w", id, r.SessionID, ErrNotFound)
		}
		u, err := url.Parse(r.RecorderToken)
		if err != nil || u.Query().Get("token") == "" {
			return fmt.Errorf("prepare recorder of %s: token URL %q: %w", id, r.RecorderToken, ErrBadToken)
		}
		tokenID := protocol.NewToken()
		q := u.Query()
		q.Set("token", tokenID)
		u.RawQuery = q.Encode()
		conn := &store.Connection{
			ID: protocol.NewConnectionID(), SessionID: r.SessionID, Type: "WEBRTC", Status: store.StatusPending,
			CreatedAt: now, TokenID: tokenID, Token: u.String(), Role: protocol.RoleSubscriber, Recorder: true,
		}
		tx.Conns[conn.ID] = conn
		r.RecorderConnection, r.RecorderToken = conn.ID, conn.Token
		r.Takeovers++
		return nil
	})
	return out, err
}

// ErrBadToken: a recording's recorder token is not a token URL.
var ErrBadToken = errors.New("recorder token is not a token URL")
