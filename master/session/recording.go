package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/recordings"
	"github.com/chorus-rtc/chorus/shared/store"
)

// RecordingProperties are POST /recordings/start's properties, validated
// and with OpenVidu's defaults applied (restapi.RecordingPropertiesFromBody).
type RecordingProperties struct {
	Name                string
	OutputMode          string
	HasAudio            bool
	HasVideo            bool
	RecordingLayout     string
	Resolution          string
	FrameRate           int
	IgnoreFailedStreams bool
}

// errIDTaken: the recording id chosen was taken meanwhile; try the next.
var errIDTaken = errors.New("recording id taken")

// StartRecording starts recording a session (REST-API.md POST
// /recordings/start): the recording is stored as starting with a hidden
// recorder connection and queued for the recorders (chorus recorder); the
// call returns once a recorder reports it started (status started), or
// fails it when none did before wait (RecordingFailed). Errors: the
// session is unknown (SessionNotFound), has no participant (SessionEmpty),
// is being recorded (RecordingConflict).
func (s *Service) StartRecording(ctx context.Context, sid protocol.SessionID, p RecordingProperties, wait time.Duration) (*store.Recording, error) {
	snap, err := s.store.Load(ctx, sid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, newError(SessionNotFound, "Session %s not found", sid)
	}
	if err != nil {
		return nil, err
	}
	if err := startable(snap.Session, snap.Conns); err != nil {
		return nil, err
	}
	rec, err := s.newRecording(ctx, sid, p)
	if err != nil {
		return nil, err
	}
	return s.awaitStart(ctx, rec, wait)
}

// newRecording stores a starting recording of a session under the first
// free id (<sessionId>, <sessionId>~1, ...) and queues it for the
// recorders (createRecording).
func (s *Service) newRecording(ctx context.Context, sid protocol.SessionID, p RecordingProperties) (*store.Recording, error) {
	var rec *store.Recording
	for n := 0; rec == nil; n++ {
		id := string(sid)
		if n > 0 {
			id += "~" + strconv.Itoa(n)
		}
		taken, err := s.store.RecordingExists(ctx, id)
		if err != nil {
			return nil, err
		}
		if taken {
			continue
		}
		rec, err = s.createRecording(ctx, sid, id, p)
		if errors.Is(err, errIDTaken) {
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// startable checks that a session can start being recorded.
func startable(sess *store.Session, conns map[protocol.ConnectionID]*store.Connection) error {
	if sess.Properties.MediaMode == "RELAYED" {
		return newError(RecordingConflict, "Session %s is not configured for using MediaMode ROUTED", sess.ID)
	}
	if sess.Recording != "" {
		return newError(RecordingConflict, "Session %s is already being recorded", sess.ID)
	}
	for _, c := range conns {
		if c.Active() && !c.Recorder {
			return nil
		}
	}
	return newError(SessionEmpty, "Session %s has no connected participants", sess.ID)
}

func (s *Service) createRecording(ctx context.Context, sid protocol.SessionID, id string, p RecordingProperties) (*store.Recording, error) {
	now := store.NowMillis()
	if err := s.store.RegisterEventStream(ctx, sid); err != nil {
		return nil, err
	}
	if err := s.store.IndexRecording(ctx, id, now); err != nil {
		return nil, err
	}
	tokenID := protocol.NewToken()
	conn := &store.Connection{
		ID: protocol.NewConnectionID(), SessionID: sid, Type: "WEBRTC", Status: store.StatusPending,
		CreatedAt: now, TokenID: tokenID, Token: s.TokenURL(sid, tokenID), Role: protocol.RoleSubscriber, Recorder: true,
	}
	var rec *store.Recording
	err := s.store.UpdateRecording(ctx, id, func(tx *store.Tx) error {
		if tx.Session == nil {
			return newError(SessionNotFound, "Session %s not found", sid)
		}
		if tx.Recording != nil {
			return errIDTaken
		}
		if err := startable(tx.Session, tx.Conns); err != nil {
			return err
		}
		rec = &store.Recording{
			ID: id, SessionID: sid, SessionCreatedAt: tx.Session.CreatedAt, Name: p.Name, OutputMode: p.OutputMode,
			HasAudio: p.HasAudio, HasVideo: p.HasVideo, RecordingLayout: p.RecordingLayout,
			Resolution: p.Resolution, FrameRate: p.FrameRate, IgnoreFailedStreams: p.IgnoreFailedStreams,
			CreatedAt: now, Status: protocol.RecordingStarting,
			RecorderConnection: conn.ID, RecorderToken: conn.Token,
		}
		if rec.Name == "" {
			rec.Name = id
		}
		tx.Recording = rec
		tx.Session.Recording = id
		tx.Conns[conn.ID] = conn
		return nil
	})
	if err != nil {
		if !errors.Is(err, errIDTaken) {
			_ = s.store.UnindexRecording(context.WithoutCancel(ctx), id)
		}
		return nil, err
	}
	return rec, nil
}

// awaitStart waits until a recorder started rec, or fails it after wait.
func (s *Service) awaitStart(ctx context.Context, rec *store.Recording, wait time.Duration) (*store.Recording, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			cur, err := s.store.LoadRecording(ctx, rec.ID)
			if err != nil {
				return nil, err
			}
			if cur.Status != protocol.RecordingStarting {
				if cur.Status == protocol.RecordingFailed {
					return nil, newError(RecordingFailed, "Recording %s failed to start: %s", rec.ID, cur.Error)
				}
				return cur, nil
			}
			continue
		case <-ctx.Done():
		case <-deadline.C:
		}
		bg, cancel := background(ctx)
		_, err := recordings.Fail(bg, s.store, rec.ID, "no recorder started the recording", store.NowMillis())
		if err == nil {
			s.closeIfLeftEmpty(bg, rec.SessionID)
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("fail recording %s: %w", rec.ID, err)
		}
		return nil, newError(RecordingFailed, "Recording %s: no recorder started it in %s", rec.ID, wait)
	}
}

// StopRecording stops a started recording (POST /recordings/stop/{id}) with
// reason recordingStoppedByServer; a recorder renders it (stopped, then
// ready). Errors: RecordingNotFound (also when it is stopped, ready or
// failed, as openvidu-server), RecordingStarting (406).
func (s *Service) StopRecording(ctx context.Context, id string) (*store.Recording, error) {
	rec, err := recordings.Stop(ctx, s.store, id, protocol.ReasonRecordingStoppedByServer, store.NowMillis())
	switch {
	case errors.Is(err, recordings.ErrNotFound):
		return nil, newError(RecordingNotFound, "Recording %s not found", id)
	case errors.Is(err, recordings.ErrStarting):
		return nil, newError(RecordingStarting, "Recording %s is still starting", id)
	case errors.Is(err, recordings.ErrNotStarted):
		// openvidu-server (SessionRestController.stopRecording) looks among
		// the started and starting recordings only: any other is not found.
		return nil, newError(RecordingNotFound, "Recording %s is not started", id)
	}
	if err == nil {
		s.closeIfLeftEmpty(ctx, rec.SessionID)
	}
	return rec, err
}

// GetRecording returns one recording (RecordingNotFound).
func (s *Service) GetRecording(ctx context.Context, id string) (*store.Recording, error) {
	rec, err := s.store.LoadRecording(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, newError(RecordingNotFound, "Recording %s not found", id)
	}
	return rec, err
}

// ListRecordings returns every recording, oldest first.
func (s *Service) ListRecordings(ctx context.Context) ([]*store.Recording, error) {
	return s.store.ListRecordings(ctx)
}

// DeleteRecording forgets a recording that is not in progress
// (RecordingConflict while starting, started or stopped but not yet
// rendered) and returns it, so the caller deletes its files.
func (s *Service) DeleteRecording(ctx context.Context, id string) (*store.Recording, error) {
	var gone *store.Recording
	err := s.store.UpdateRecording(ctx, id, func(tx *store.Tx) error {
		gone = tx.Recording
		if gone == nil {
			return newError(RecordingNotFound, "Recording %s not found", id)
		}
		if gone.Active() {
			return newError(RecordingConflict, "Recording %s is %s: stop it and wait until it is ready", id, gone.Status)
		}
		tx.Recording = nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.store.UnindexRecording(ctx, id); err != nil {
		s.log.Warn("unindex recording", "recording", id, "err", err)
	}
	return gone, nil
}

// ReasonRecorderLost is the reason of a recording stopped because no
// recorder held it for RecordingOrphanTimeout: OpenVidu has no worker
// failover and names a recording stopped by a crashed node nodeCrashed
// (openvidu-server-webhook.md, recordingStatusChanged reasons).
const ReasonRecorderLost = protocol.ReasonNodeCrashed

// orphans tracks, for the recording sweeper, since when each recording job
// has had no recorder holding its lease. It belongs to one RunSweeper loop.
type orphans map[string]time.Time

// sweepRecordings makes sure no recording stays active without a live
// recorder: a job whose lease nobody has held for bound (its worker died
// and no other recorder took it over) is stopped if it was capturing (any
// recorder that comes later renders it from the segments on disk: stopped,
// then ready), and failed if it stays stopped another bound without a
// recorder. Jobs of recordings that are gone, ready or failed are removed.
// since is the sweeper's memory between calls; the store's transactions
// make each change happen once whichever master sweeps.
func (s *Service) sweepRecordings(ctx context.Context, since orphans, bound time.Duration) {
	ids, err := s.store.RecordingJobs(ctx)
	if err != nil {
		return
	}
	now := time.Now()
	jobs := map[string]bool{}
	for _, id := range ids {
		jobs[id] = true
		held, err := s.store.RecordingLeaseHeld(ctx, id)
		if err != nil {
			continue
		}
		if held {
			delete(since, id)
			continue
		}
		first, seen := since[id]
		if !seen {
			since[id] = now
			continue
		}
		if now.Sub(first) < bound {
			continue
		}
		s.sweepRecording(ctx, id)
		delete(since, id) // a new bound for the next step
	}
	for id := range since {
		if !jobs[id] {
			delete(since, id)
		}
	}
}

// sweepRecording moves one recording without a recorder one step on.
func (s *Service) sweepRecording(ctx context.Context, id string) {
	rec, err := s.store.LoadRecording(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		_ = s.store.FinishRecordingJob(ctx, id)
		return
	}
	if err != nil {
		return
	}
	switch rec.Status {
	case protocol.RecordingStarted:
		s.log.Warn("recording without a recorder: stopped, a recorder renders what was captured", "recording", id)
		_, err = recordings.Stop(ctx, s.store, id, ReasonRecorderLost, store.NowMillis())
	case protocol.RecordingStarting, protocol.RecordingStopped:
		s.log.Warn("recording without a recorder: failed", "recording", id, "status", rec.Status)
		_, err = recordings.Fail(ctx, s.store, id, "no recorder took the recording over", store.NowMillis())
		if err == nil {
			err = s.store.FinishRecordingJob(ctx, id)
		}
	default:
		err = s.store.FinishRecordingJob(ctx, id)
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("sweep recording", "recording", id, "err", err)
	}
	s.closeIfLeftEmpty(ctx, rec.SessionID)
}
