package session

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"time"

	"github.com/chorus-rtc/chorus/master/events"
	"github.com/chorus-rtc/chorus/shared/protocol"
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
	// RecoveryGrace is how long Redis must have answered this master
	// without interruption before it declares other masters crashed,
	// evicts participants or sweeps recordings without a recorder: after
	// an outage (or a Redis restart) everybody's heartbeats and
	// reconnections lapsed together, and they get this long to come back
	// first.
	RecoveryGrace time.Duration
	// RecordingOrphanTimeout is how long a recording job may go without a
	// recorder holding its lease before the sweeper stops it (then fails
	// it, if still no recorder renders it); 0: never (sweepRecordings).
	RecordingOrphanTimeout time.Duration
	// RecordingAutostop turns the automatic stop of recordings on, after
	// RecordingAutostopTimeout (OPENVIDU_RECORDING_AUTOSTOP_TIMEOUT;
	// autostopRecordings).
	RecordingAutostop        bool
	RecordingAutostopTimeout time.Duration
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
	var healthySince time.Time
	orphaned := orphans{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := s.store.Ping(ctx); err != nil {
				if !healthySince.IsZero() && ctx.Err() == nil {
					s.log.Warn("Redis unavailable: no crash declaration or eviction until it is back", "err", err)
				}
				healthySince = time.Time{}
				continue
			}
			if healthySince.IsZero() {
				healthySince = time.Now()
			}
			// Session membership is not liveness: the automatic stop needs
			// no grace.
			if cfg.RecordingAutostop {
				s.autostopRecordings(ctx, cfg.RecordingAutostopTimeout)
			}
			if time.Since(healthySince) < cfg.RecoveryGrace {
				continue
			}
			s.reapDeadMasters(ctx)
			s.evictDue(ctx)
			if cfg.RecordingOrphanTimeout > 0 {
				s.sweepRecordings(ctx, orphaned, cfg.RecordingOrphanTimeout)
			}
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

// reapDeadMasters handles masters whose registration expired without a
// graceful deregistration: they are declared crashed (if no peer did it
// already) and their participants detached.
func (s *Service) reapDeadMasters(ctx context.Context) {
	_, dead, err := s.store.Masters(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("list masters", "err", err)
		}
		return
	}
	for _, m := range dead {
		s.declareMasterCrashed(ctx, store.MasterInfo{ID: m}, time.Now(), true)
	}
}

// DeclareMasterCrashed handles a master incarnation that stopped answering
// its peers (since: when it first failed) or whose registration expired: the
// first master to flag it removes its registration (proxies stop routing to
// it) and emits nodeCrashed with nodeRole "masternode", exactly once in the
// cluster; every caller then helps detach its participants, which may resume
// on another master within the grace period.
func (s *Service) DeclareMasterCrashed(ctx context.Context, m store.MasterInfo, since time.Time) {
	s.declareMasterCrashed(ctx, m, since, false)
}

// declareMasterCrashed is DeclareMasterCrashed; expired says the master was
// found by its expired registration, which a graceful deregistration may
// have removed meanwhile (then it did not crash, and nothing happens).
func (s *Service) declareMasterCrashed(ctx context.Context, m store.MasterInfo, since time.Time, expired bool) {
	flag := s.store.FlagMasterCrashed
	if expired {
		flag = s.store.FlagExpiredMasterCrashed
	}
	// The sessions nodeCrashed names are read before flagging: callers that
	// lose the flag take (and empty) the index at once, so the winner,
	// reading it after its flag, found it empty when masters declared the
	// crash together (TestMasterCrashReapedOnce).
	held, _ := s.store.MasterConnections(ctx, m.ID)
	won, err := flag(ctx, m.ID, since)
	if err != nil {
		s.log.Warn("flag crashed master", "master", m.ID, "err", err)
		return
	}
	if expired && !won {
		if crashed, err := s.store.MasterCrashed(ctx, m.ID); err != nil || !crashed {
			return // deregistered meanwhile: a graceful shutdown, not a crash
		}
	}
	if won {
		sids := map[protocol.SessionID]bool{}
		var sessionIDs []protocol.SessionID
		for _, c := range held {
			if !sids[c.SessionID] {
				sids[c.SessionID] = true
				sessionIDs = append(sessionIDs, c.SessionID)
			}
		}
		slices.Sort(sessionIDs)
		node := events.MediaNode{ID: string(m.ID), URI: m.InternalURL, IP: hostOf(m.InternalURL)}
		ev := events.NewNodeCrashed(store.NowMillis(), s.cfg.ClusterID, node, events.RoleMasterNode, since.UnixMilli(), sessionIDs)
		if err := s.store.EmitCluster(ctx, ev.Stored()); err != nil {
			s.log.Warn("emit nodeCrashed", "master", m.ID, "err", err)
		}
		s.log.Warn("master crashed: its participants may resume on another master", "master", m.ID, "participants", len(held))
	}
	conns, err := s.store.TakeMasterConnections(ctx, m.ID)
	if err != nil {
		s.log.Warn("take connections of crashed master", "master", m.ID, "err", err)
		return
	}
	for _, c := range conns {
		if err := s.DetachFromMaster(ctx, c.SessionID, c.ConnectionID, m.ID); err != nil {
			s.log.Warn("detach participant of crashed master", "master", m.ID, "session", c.SessionID, "connection", c.ConnectionID, "err", err)
		}
	}
	if err := s.store.ForgetMaster(ctx, m.ID); err != nil {
		s.log.Warn("forget crashed master", "master", m.ID, "err", err)
	}
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
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
		err := s.update(ctx, sid, func(tx *store.Tx) error {
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
