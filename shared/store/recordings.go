package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// Recording is the stored state of one OpenVidu recording. It lives in the
// slot of its session (P:{sid}:rec:<id>), so a change of status commits
// with the session's notifications (recordingStarted, recordingStopped) and
// events (recordingStatusChanged) in one transaction (UpdateRecording); it
// outlives the session, until DELETE /recordings/<id>.
type Recording struct {
	ID        string             `json:"id"` // <sessionId>, then <sessionId>~1, ~2... (OpenVidu's ids)
	SessionID protocol.SessionID `json:"sessionId"`
	// SessionCreatedAt is the session's createdAt (its uniqueSessionId in events).
	SessionCreatedAt    int64  `json:"sessionCreatedAt"`
	Name                string `json:"name"`
	OutputMode          string `json:"outputMode"`
	HasAudio            bool   `json:"hasAudio"`
	HasVideo            bool   `json:"hasVideo"`
	RecordingLayout     string `json:"recordingLayout,omitempty"`
	CustomLayout        string `json:"customLayout,omitempty"`
	Resolution          string `json:"resolution,omitempty"`
	FrameRate           int    `json:"frameRate,omitempty"`
	IgnoreFailedStreams bool   `json:"ignoreFailedStreams,omitempty"`
	// CreatedAt is when the start was asked (Unix ms); StartedAt when a
	// recorder began capturing (the output's time zero); StoppedAt when the
	// stop was asked, the output's end.
	CreatedAt int64  `json:"createdAt"`
	StartedAt int64  `json:"startedAt,omitempty"`
	StoppedAt int64  `json:"stoppedAt,omitempty"`
	Status    string `json:"status"` // protocol.Recording* statuses
	// Reason is why the recording stopped (OpenVidu's EndReason).
	Reason string `json:"reason,omitempty"`
	// File is the output's name in <recording path>/<id>/ once ready.
	File     string  `json:"file,omitempty"`
	Size     int64   `json:"size"`
	Duration float64 `json:"duration"` // seconds
	// Error tells why the recording failed.
	Error string `json:"error,omitempty"`
	// RecorderConnection is the hidden connection through which a recorder
	// receives the session's streams, and RecorderToken its token.
	RecorderConnection protocol.ConnectionID `json:"recorderConnection,omitempty"`
	RecorderToken      string                `json:"recorderToken,omitempty"`
	// Gaps are the stretches of recorded streams missing from the output
	// (set when ready).
	Gaps []protocol.RecordingGap `json:"gaps,omitempty"`
	// Takeovers counts the workers that took the recording over after its
	// worker died while capturing, each with a fresh recorder connection
	// (recordings.PrepareRecorder); each left a gap between segments.
	Takeovers int `json:"takeovers,omitempty"`
	// AutostopSince is when the recording's automatic stop timeout began
	// (Unix ms; 0: not counting): nobody left in the session, or nobody
	// publishing in a MANUAL one (recording.md "Automatic stop of
	// recordings"). Set and cleared by the masters' sweepers.
	AutostopSince int64 `json:"autostopSince,omitempty"`
}

// Active reports whether the recording still captures or waits for its files.
func (r *Recording) Active() bool {
	return r.Status == protocol.RecordingStarting || r.Status == protocol.RecordingStarted || r.Status == protocol.RecordingStopped
}

// RecordingSessionID is the session of a recording id (<sessionId>[~<n>]).
func RecordingSessionID(recordingID string) protocol.SessionID {
	sid, _, _ := strings.Cut(recordingID, "~")
	return protocol.SessionID(sid)
}

func (s keyspace) recordingKey(sid protocol.SessionID, id string) string {
	return s.prefix + ":{" + string(sid) + "}:rec:" + id
}
func (s keyspace) recordingLeaseKey(id string) string {
	return s.recordingKey(RecordingSessionID(id), id) + ":lease"
}
func (s keyspace) recordingsKey() string    { return s.prefix + ":recordings" }
func (s keyspace) recordingJobsKey() string { return s.prefix + ":recjobs" }

func (s *Sessions) loadRecordingInto(ctx context.Context, rtx *redis.Tx, tx *Tx, id string) error {
	tx.recordingID = id
	raw, err := rtx.Get(ctx, s.recordingKey(tx.sid, id)).Result()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load recording %s: %w", id, err)
	}
	var r Recording
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return fmt.Errorf("decode recording %s: %w", id, err)
	}
	tx.Recording, tx.rawRecording = &r, raw
	return nil
}

func (s *Sessions) applyRecording(ctx context.Context, p redis.Pipeliner, tx *Tx) error {
	if tx.recordingID == "" {
		return nil
	}
	key := s.recordingKey(tx.sid, tx.recordingID)
	if tx.Recording == nil {
		if tx.rawRecording != "" {
			p.Del(ctx, key, key+":lease")
		}
		return nil
	}
	if tx.Recording.ID != tx.recordingID {
		return fmt.Errorf("recording %s written under id %s", tx.Recording.ID, tx.recordingID)
	}
	raw, err := json.Marshal(tx.Recording)
	if err != nil {
		return fmt.Errorf("encode recording: %w", err)
	}
	if string(raw) != tx.rawRecording {
		p.Set(ctx, key, raw, 0)
	}
	return nil
}

// UpdateRecording is Update with recording id loaded in tx.Recording (nil
// when it does not exist; the session may not exist either: tx.Session nil).
// Setting tx.Recording creates or changes it, setting it to nil deletes it
// (with its lease); the listing index and the job set are the caller's
// (IndexRecording, FinishRecordingJob).
func (s *Sessions) UpdateRecording(ctx context.Context, id string, fn func(tx *Tx) error) error {
	return s.update(ctx, RecordingSessionID(id), id, fn)
}

// LoadRecording returns a recording, or ErrNotFound.
func (s *Sessions) LoadRecording(ctx context.Context, id string) (*Recording, error) {
	raw, err := s.rdb.Get(ctx, s.recordingKey(RecordingSessionID(id), id)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load recording %s: %w", id, err)
	}
	var r Recording
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("decode recording %s: %w", id, err)
	}
	return &r, nil
}

// RecordingExists reports whether a recording id is taken.
func (s *Sessions) RecordingExists(ctx context.Context, id string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.recordingKey(RecordingSessionID(id), id)).Result()
	if err != nil {
		return false, fmt.Errorf("check recording %s: %w", id, err)
	}
	return n > 0, nil
}

// IndexRecording lists a recording (GET /recordings) and queues its job for
// the recorders. It runs before the transaction that creates the recording:
// a crash in between leaves an entry without a recording, which ListRecordings
// and the recorders drop once it is older than RecordingCommitGrace (a
// younger one may be a recording being created right now).
func (s *Sessions) IndexRecording(ctx context.Context, id string, createdAt int64) error {
	pipe := s.rdb.Pipeline()
	pipe.ZAdd(ctx, s.recordingsKey(), redis.Z{Score: float64(createdAt), Member: id})
	pipe.SAdd(ctx, s.recordingJobsKey(), id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("index recording %s: %w", id, err)
	}
	return nil
}

// RecordingCommitGrace is how old an index entry without its recording must
// be to count as a leftover (IndexRecording runs before the transaction
// that creates the recording).
const RecordingCommitGrace = time.Minute

// RecordingLeftover reports whether an index entry whose recording was not
// found is a leftover of a creation that never committed, rather than one
// committing right now.
func (s *Sessions) RecordingLeftover(ctx context.Context, id string) bool {
	score, err := s.rdb.ZScore(ctx, s.recordingsKey(), id).Result()
	if err != nil {
		return errors.Is(err, redis.Nil) // not even listed
	}
	return time.Since(time.UnixMilli(int64(score))) > RecordingCommitGrace
}

// UnindexRecording removes a deleted recording from the listing and the jobs.
func (s *Sessions) UnindexRecording(ctx context.Context, id string) error {
	pipe := s.rdb.Pipeline()
	pipe.ZRem(ctx, s.recordingsKey(), id)
	pipe.SRem(ctx, s.recordingJobsKey(), id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("unindex recording %s: %w", id, err)
	}
	return nil
}

// ListRecordings returns every recording, oldest first; index entries
// without a recording are dropped.
func (s *Sessions) ListRecordings(ctx context.Context) ([]*Recording, error) {
	ids, err := s.rdb.ZRange(ctx, s.recordingsKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list recordings: %w", err)
	}
	out := make([]*Recording, 0, len(ids))
	for _, id := range ids {
		r, err := s.LoadRecording(ctx, id)
		if errors.Is(err, ErrNotFound) {
			if s.RecordingLeftover(ctx, id) {
				_ = s.rdb.ZRem(ctx, s.recordingsKey(), id).Err()
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// RecordingJobs returns the ids of the recordings recorders must work on.
func (s *Sessions) RecordingJobs(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, s.recordingJobsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list recording jobs: %w", err)
	}
	return ids, nil
}

// FinishRecordingJob removes a job that needs no recorder any more (ready,
// failed, or its recording gone).
func (s *Sessions) FinishRecordingJob(ctx context.Context, id string) error {
	if err := s.rdb.SRem(ctx, s.recordingJobsKey(), id).Err(); err != nil {
		return fmt.Errorf("finish recording job %s: %w", id, err)
	}
	return nil
}

// AcquireRecordingLease makes holder the recorder of a recording for ttl, or
// extends its lease; it reports whether holder holds it (as
// AcquireEventLease).
func (s *Sessions) AcquireRecordingLease(ctx context.Context, id, holder string, ttl time.Duration) (bool, error) {
	key := s.recordingLeaseKey(id)
	ok, err := s.rdb.SetNX(ctx, key, holder, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("lease recording %s: %w", id, err)
	}
	if ok {
		return true, nil
	}
	res, err := extendLease.Run(ctx, s.rdb, []string{key}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("lease recording %s: %w", id, err)
	}
	return res == 1, nil
}

// ReleaseRecordingLease gives up a lease held by holder.
func (s *Sessions) ReleaseRecordingLease(ctx context.Context, id, holder string) error {
	if err := releaseLease.Run(ctx, s.rdb, []string{s.recordingLeaseKey(id)}, holder).Err(); err != nil {
		return fmt.Errorf("release recording lease %s: %w", id, err)
	}
	return nil
}

// RecordingLeaseHeld reports whether some recorder holds the lease of a
// recording.
func (s *Sessions) RecordingLeaseHeld(ctx context.Context, id string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.recordingLeaseKey(id)).Result()
	if err != nil {
		return false, fmt.Errorf("recording lease %s: %w", id, err)
	}
	return n == 1, nil
}
