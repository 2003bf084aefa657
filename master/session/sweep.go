package session

import (
	"context"
	"errors"
	"time"

	"github.com/chorus-rtc/chorus/shared/store"
)

// SweepConfig sets the periodic housekeeping every master runs. Every master
// runs it; the store's transactions make each action happen once.
type SweepConfig struct {
	// Interval between eviction and dead-master sweeps.
	Interval time.Duration
	// GarbageInterval and GarbageThreshold are OpenVidu's
	// OPENVIDU_SESSIONS_GARBAGE_INTERVAL and _THRESHOLD: sessions nobody
	// joined, older than the threshold, are closed every interval (0: never).
	GarbageInterval  time.Duration
	GarbageThreshold time.Duration
}

// RunSweeper evicts participants that did not reconnect in time, takes over
// the participants of masters whose registration expired, and collects
// unused sessions, until ctx ends.
func (s *Service) RunSweeper(ctx context.Context, cfg SweepConfig) error {
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var gc <-chan time.Time
	if cfg.GarbageInterval > 0 {
		t := time.NewTicker(cfg.GarbageInterval)
		defer t.Stop()
		gc = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.reapDeadMasters(ctx)
			s.evictDue(ctx)
		case <-gc:
			s.CollectGarbage(ctx, cfg.GarbageThreshold)
		}
	}
}

// evictDue evicts the participants whose reconnection deadline passed.
func (s *Service) evictDue(ctx context.Context) {
	due, err := s.store.DueEvictions(ctx, time.Now(), 100)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("list due evictions", "err", err)
		}
		return
	}
	for _, d := range due {
		if err := s.EvictDisconnected(ctx, d.SessionID, d.ConnectionID); err != nil {
			s.log.Warn("evict disconnected participant", "session", d.SessionID, "connection", d.ConnectionID, "err", err)
			continue
		}
		if err := s.store.CancelEviction(ctx, d.SessionID, d.ConnectionID); err != nil {
			s.log.Warn("forget eviction", "err", err)
		}
	}
}

// reapDeadMasters detaches the participants of masters whose registration
// expired (a crashed master), so they are evicted unless they reconnect to
// another master within the grace period.
func (s *Service) reapDeadMasters(ctx context.Context) {
	_, dead, err := s.store.Masters(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("list masters", "err", err)
		}
		return
	}
	for _, m := range dead {
		conns, err := s.store.TakeMasterConnections(ctx, m)
		if err != nil {
			s.log.Warn("take connections of dead master", "master", m, "err", err)
			continue
		}
		for _, c := range conns {
			if err := s.DetachFromMaster(ctx, c.SessionID, c.ConnectionID, m); err != nil {
				s.log.Warn("detach participant of dead master", "master", m, "session", c.SessionID, "connection", c.ConnectionID, "err", err)
			}
		}
		if err := s.store.ForgetMaster(ctx, m); err != nil {
			s.log.Warn("forget dead master", "master", m, "err", err)
			continue
		}
		s.log.Info("master registration expired: its participants may reconnect elsewhere", "master", m, "participants", len(conns))
	}
}

// CollectGarbage closes sessions that nobody ever joined and that are older
// than threshold, as OpenVidu's session garbage collector does (no
// sessionDestroyed for them), and drops index entries of sessions that no
// longer exist.
func (s *Service) CollectGarbage(ctx context.Context, threshold time.Duration) {
	ids, err := s.store.ListSessionIDs(ctx)
	if err != nil {
		s.log.Warn("garbage collection: list sessions", "err", err)
		return
	}
	cutoff := time.Now().Add(-threshold).UnixMilli()
	for _, sid := range ids {
		var collected *store.Session
		err := s.store.Update(ctx, sid, func(tx *store.Tx) error {
			collected = nil
			if tx.Session == nil || tx.Session.ActivatedAt != 0 || tx.Session.CreatedAt >= cutoff {
				return nil
			}
			collected = tx.Session
			tx.DeleteSession()
			return nil
		})
		if err != nil {
			s.log.Warn("garbage collection", "session", sid, "err", err)
			continue
		}
		if collected != nil {
			s.log.Info("garbage-collected unused session", "session", sid)
			s.afterSessionClosed(ctx, collected, nil)
			continue
		}
		if _, err := s.store.Load(ctx, sid); errors.Is(err, store.ErrNotFound) {
			// An index entry whose session is gone (closed by a master that
			// died before unindexing it, or being created right now: the
			// creator indexes first, so leave recent entries alone).
			if age, ok := s.store.SessionIndexedAt(ctx, sid); ok && time.Since(age) > time.Minute {
				_ = s.store.UnindexSession(ctx, sid)
			}
		}
	}
}
