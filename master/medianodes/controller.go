package medianodes

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-rtc/chorus/master/events"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// ControllerConfig configures a Controller.
type ControllerConfig struct {
	Manager *Manager
	// Holder returns the identity the lease is held under (the master's
	// current incarnation).
	Holder func() protocol.MasterID
	// LeaseTTL is how long the lease lasts without renewal: a crashed
	// controller's successor takes over within it.
	LeaseTTL time.Duration
	// Interval between two rounds.
	Interval time.Duration
	// SuspectAfter is the heartbeat age after which a node is checked
	// directly (GET /chorus/health) every round.
	SuspectAfter time.Duration
	// Autoscaler, if set, runs on the controller.
	Autoscaler *Autoscaler
	// OnAction, if set, is told of each thing the controller did (Action*),
	// for the master's metrics.
	OnAction func(action string)
	Logger   *slog.Logger
}

// What the controller does, as ControllerConfig.OnAction names it.
const (
	ActionCrash   = "crash"   // a node declared crashed
	ActionRecover = "recover" // a crashed node reported again
	ActionMigrate = "migrate" // a session moved off a crashed or draining node
	ActionClose   = "close"   // a session closed with its node
	// By the Manager (REST, or the autoscaler on the controller):
	ActionLaunch = "launch" // a node launched (whether or not it came up)
	ActionDrop   = "drop"   // a node asked to stop (any deletion strategy)
)

// Controller drives the media nodes on one master at a time (a Redis lease):
// it adopts self-registered nodes, moves launching nodes to running (or
// failed), detects crashed nodes and handles their sessions, terminates
// nodes, and autoscales. Every master runs one; only the lease holder acts,
// and each of its changes commits only while it holds the lease, so a
// controller that lost it cannot decide anything twice.
type Controller struct {
	cfg ControllerConfig
	m   *Manager
	log *slog.Logger

	// followers hold the nodes' liveness streams while this controller
	// holds the lease.
	followers *followers
	// wake asks Run for a round now (a lost stream, a declared crash).
	wake chan struct{}
	// leading is whether this controller holds the lease, for Leading.
	leading atomic.Bool

	mu      sync.Mutex
	watches map[protocol.NodeID]*watch // crash detection state, by node
	jobs    map[string]bool            // running background jobs, by key
	wg      sync.WaitGroup
}

// watch is what the controller knows about a silent node.
type watch struct {
	checking   bool
	lastResult error     // of the last direct check
	checkedAt  time.Time // when the last check started
	warned     bool
}

// NewController returns a controller.
func NewController(cfg ControllerConfig) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnAction == nil {
		cfg.OnAction = func(string) {}
	}
	c := &Controller{cfg: cfg, m: cfg.Manager, log: cfg.Logger, watches: map[protocol.NodeID]*watch{}, jobs: map[string]bool{},
		wake: make(chan struct{}, 1)}
	streams := &http.Client{Transport: c.m.cfg.HTTPClient.Transport} // no timeout: a stream lasts
	c.followers = newFollowers(streams, c.m.cfg.ClusterSecret, c.check, c.wakeRound, c.log)
	return c
}

// wakeRound makes Run start a round now rather than at the next tick.
func (c *Controller) wakeRound() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run competes for the lease and, while holding it, runs a round every
// interval, until ctx ends; then it waits for its jobs and gives the lease
// up so that another master takes over at once.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	var leader protocol.MasterID
	var renewedAt time.Time
	defer func() {
		c.leading.Store(false)
		c.followers.stop()
		c.wg.Wait()
		if leader != "" {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = c.m.store.ReleaseControllerLease(rctx, leader)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.wake:
		}
		holder := c.cfg.Holder()
		if time.Since(renewedAt) >= c.cfg.LeaseTTL/3 || holder != leader {
			ok, err := c.m.store.AcquireControllerLease(ctx, holder, c.cfg.LeaseTTL)
			if err != nil {
				if ctx.Err() == nil && leader != "" {
					c.log.Warn("renew the controller lease", "err", err)
				}
				ok = false
			}
			renewedAt = time.Now()
			switch {
			case ok && leader != holder:
				c.log.Info("this master is now the media node controller", "holder", holder)
				c.resetWatches()
				if c.cfg.Autoscaler != nil {
					c.cfg.Autoscaler.Lead(time.Now())
				}
				leader = holder
			case !ok && leader != "":
				c.log.Info("this master is no longer the media node controller", "holder", leader)
				c.followers.keepOnly(nil)
				leader = ""
			}
			c.leading.Store(leader != "")
		}
		if leader != "" {
			c.round(ctx, leader)
		}
	}
}

// Leading reports whether this master holds the controller's lease (as of
// its last renewal): what runs on one master at a time asks it.
func (c *Controller) Leading() bool { return c.leading.Load() }

func (c *Controller) resetWatches() {
	c.followers.keepOnly(nil)
	c.mu.Lock()
	c.watches = map[protocol.NodeID]*watch{}
	c.mu.Unlock()
}

// spawn runs fn in the background unless a job with the same key runs.
func (c *Controller) spawn(ctx context.Context, key string, fn func(ctx context.Context)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs[key] {
		return
	}
	c.jobs[key] = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.jobs, key)
			c.mu.Unlock()
		}()
		fn(ctx)
	}()
}

// round is one pass over the cluster's nodes.
func (c *Controller) round(ctx context.Context, leader protocol.MasterID) {
	m := c.m
	if m.cfg.AutoAdopt {
		unadopted, err := m.store.UnadoptedMediaNodes(ctx, m.cfg.CrashWindow)
		if err != nil {
			c.roundError("list unadopted media nodes", err)
			return
		}
		for _, hb := range unadopted {
			if _, err := m.adopt(ctx, leader, hb, ""); err != nil && !errors.Is(err, errAlreadyKnown) {
				c.roundError("adopt media node", err)
			}
		}
	}
	nodes, err := m.store.MediaNodes(ctx)
	if err != nil {
		c.roundError("list media nodes", err)
		return
	}
	ids := make([]protocol.NodeID, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	sessions, err := m.store.NodeSessionCounts(ctx, ids)
	if err != nil {
		c.roundError("count media node sessions", err)
		return
	}
	now := time.Now()
	followed := map[protocol.NodeID]bool{}
	for _, n := range nodes {
		c.handle(ctx, leader, n, sessions[n.ID], now)
		if Serving(n) {
			followed[n.ID] = true
			c.followers.follow(ctx, nodeAddr{ID: n.ID, URI: n.URI})
		}
	}
	c.followers.keepOnly(followed)
	c.forgetWatches(ids)
	if a := c.cfg.Autoscaler; a != nil {
		if err := a.Round(ctx, leader, now); err != nil {
			c.roundError("autoscaling", err)
		}
	}
}

func (c *Controller) roundError(what string, err error) {
	if !errors.Is(err, store.ErrNotLeader) && !errors.Is(err, context.Canceled) {
		c.log.Warn(what, "err", err)
	}
}

// handle advances one node.
func (c *Controller) handle(ctx context.Context, leader protocol.MasterID, n store.MediaNodeInfo, sessions int64, now time.Time) {
	m := c.m
	if sessions > 0 {
		if act := c.sessionAction(n); act != nil {
			c.spawn(ctx, "sessions:"+string(n.ID), func(ctx context.Context) { act(ctx, n) })
		}
	}
	reporting := n.Fresh(now, m.cfg.CrashWindow)
	launchedFor := now.Sub(time.UnixMilli(n.LaunchingTime))
	switch {
	case n.Status == Launching:
		if reporting {
			c.commit(ctx, leader, n.ID, "connect", func(tx *store.NodesTx, cur *store.MediaNodeInfo) error {
				if cur.Status != Launching {
					return nil
				}
				connect(cur, n, now.UnixMilli())
				return m.transition(tx, cur, Running, now.UnixMilli())
			})
		} else if launchedFor > m.cfg.LaunchTimeout {
			c.log.Warn("media node did not report within the launch timeout", "node", n.ID, "timeout", m.cfg.LaunchTimeout)
			c.spawn(ctx, "finish:"+string(n.ID), func(ctx context.Context) { c.finish(ctx, leader, n, Failed) })
		}
	case n.Status == Canceled:
		if reporting || launchedFor > m.cfg.LaunchTimeout {
			c.commit(ctx, leader, n.ID, "terminate canceled node", func(tx *store.NodesTx, cur *store.MediaNodeInfo) error {
				if cur.Status != Canceled {
					return nil
				}
				return m.transition(tx, cur, Terminating, now.UnixMilli())
			})
		}
	case n.Status == Terminating:
		if sessions == 0 {
			c.spawn(ctx, "finish:"+string(n.ID), func(ctx context.Context) { c.finish(ctx, leader, n, Terminated) })
		}
	case n.Crashed():
		c.handleCrashed(ctx, leader, n, sessions, now)
	case n.Status == Running || n.Status == WaitingIdle:
		if c.crashed(ctx, n, now) {
			c.declareCrashed(ctx, leader, n, now)
			return
		}
		if n.Status == WaitingIdle && sessions == 0 {
			c.commit(ctx, leader, n.ID, "terminate idle node", func(tx *store.NodesTx, cur *store.MediaNodeInfo) error {
				if cur.Status != WaitingIdle || cur.Crashed() || tx.Sessions[cur.ID] > 0 {
					return nil
				}
				return m.transition(tx, cur, Terminating, now.UnixMilli())
			})
		}
	}
}

// commit changes one node under the lease; fn gets the current record (it
// is skipped if the node is gone).
func (c *Controller) commit(ctx context.Context, leader protocol.MasterID, id protocol.NodeID, what string, fn func(tx *store.NodesTx, n *store.MediaNodeInfo) error) {
	err := c.m.store.UpdateMediaNodes(ctx, leader, func(tx *store.NodesTx) error {
		n := tx.Nodes[id]
		if n == nil {
			return nil
		}
		return fn(tx, n)
	})
	if err != nil {
		c.roundError(what+" "+string(id), err)
	}
}

// sessionAction says what to do with the sessions still pinned to a node:
// a crashed node's follow the crash policy; a terminating node's are closed
// (mediaServerDisconnect, as OpenVidu closes them on DELETE now); a node
// draining by migration moves them.
func (c *Controller) sessionAction(n store.MediaNodeInfo) func(ctx context.Context, n store.MediaNodeInfo) {
	switch {
	case n.Crashed() && c.m.cfg.CrashPolicy == PolicyMigrate:
		return func(ctx context.Context, n store.MediaNodeInfo) { c.moveSessions(ctx, n, false, ReasonNodeCrashed) }
	case n.Crashed():
		return func(ctx context.Context, n store.MediaNodeInfo) { c.closeSessions(ctx, n, ReasonNodeCrashed) }
	case n.Status == Terminating:
		return func(ctx context.Context, n store.MediaNodeInfo) { c.closeSessions(ctx, n, ReasonMediaServerDisconnect) }
	case n.Status == WaitingIdle && n.Drain == DropMigrate:
		return func(ctx context.Context, n store.MediaNodeInfo) { c.moveSessions(ctx, n, true, "") }
	}
	return nil
}

// moveSessions migrates every session of a node. Sessions no node can take
// are closed with fallback (if set) or left for a later round.
func (c *Controller) moveSessions(ctx context.Context, n store.MediaNodeInfo, alive bool, fallback string) {
	sids, err := c.m.store.NodeSessions(ctx, n.ID)
	if err != nil {
		c.roundError("list sessions of "+string(n.ID), err)
		return
	}
	start := time.Now()
	var silentSince time.Time
	if !alive && n.DisconnectedAt > 0 {
		silentSince = time.UnixMilli(n.DisconnectedAt)
	}
	moved := 0
	for _, sid := range sids {
		err := c.m.cfg.Sessions.MigrateSession(ctx, sid, n.ID, alive)
		switch {
		case err == nil:
			moved++
			c.cfg.OnAction(ActionMigrate)
			c.spawn(ctx, "nudge:"+string(sid), func(ctx context.Context) { c.m.cfg.Sessions.NudgePublishers(ctx, sid, silentSince) })
		case errors.Is(err, ErrNoMediaNode) && fallback != "":
			c.log.Warn("no media node can take the session: closing it", "session", sid, "node", n.ID, "reason", fallback)
			if err := c.m.cfg.Sessions.CloseNodeSession(ctx, sid, n.ID, fallback); err != nil {
				c.roundError("close session "+string(sid), err)
			} else {
				c.cfg.OnAction(ActionClose)
			}
		case errors.Is(err, ErrNoMediaNode):
			c.log.Warn("no media node can take the session yet", "session", sid, "node", n.ID)
		default:
			c.roundError("migrate session "+string(sid), err)
		}
	}
	c.log.Info("sessions migrated", "node", n.ID, "sessions", moved, "of", len(sids), "took", time.Since(start).Round(time.Millisecond))
}

// closeSessions closes every session of a node with the reason.
func (c *Controller) closeSessions(ctx context.Context, n store.MediaNodeInfo, reason string) {
	sids, err := c.m.store.NodeSessions(ctx, n.ID)
	if err != nil {
		c.roundError("list sessions of "+string(n.ID), err)
		return
	}
	for _, sid := range sids {
		if err := c.m.cfg.Sessions.CloseNodeSession(ctx, sid, n.ID, reason); err != nil {
			c.roundError("close session "+string(sid), err)
		} else {
			c.cfg.OnAction(ActionClose)
		}
	}
	c.log.Info("sessions closed", "node", n.ID, "sessions", len(sids), "reason", reason)
}

// finish stops a node through its provider, then records its final status
// (terminated, or failed for a launch that timed out) and forgets it.
func (c *Controller) finish(ctx context.Context, leader protocol.MasterID, n store.MediaNodeInfo, final string) {
	if err := c.m.cfg.Provider.Stop(ctx, n); err != nil {
		c.log.Warn("stop media node", "node", n.ID, "err", err)
	}
	c.commit(ctx, leader, n.ID, "finish", func(tx *store.NodesTx, cur *store.MediaNodeInfo) error {
		if (final == Terminated && cur.Status != Terminating) || (final == Failed && cur.Status != Launching) {
			return nil
		}
		if tx.Sessions[cur.ID] > 0 {
			return nil // a session was pinned meanwhile: a later round closes it first
		}
		return c.m.transition(tx, cur, final, store.NowMillis())
	})
	c.log.Info("media node "+final, "node", n.ID)
}

// crashed tells whether a running node is dead: its liveness stream ended
// and it no longer answers (see liveness.go), or it has been silent for the
// crash window and failed a direct check made after it went silent. A node
// that restarted (another process behind the same id) lost its peer
// connections: that is a crash too, which it recovers from at once.
func (c *Controller) crashed(ctx context.Context, n store.MediaNodeInfo, now time.Time) bool {
	if n.Instance != 0 && n.StartedAt != 0 && n.StartedAt != n.Instance {
		c.log.Warn("media node restarted: its peer connections are gone", "node", n.ID)
		return true
	}
	if lost := c.followers.lostAt(n.ID); !lost.IsZero() {
		if n.HeartbeatAt <= lost.UnixMilli() {
			return true
		}
		// It reported after its stream was lost: alive after all (a
		// broken connection and two failed checks on the way): follow
		// it anew.
		c.log.Warn("media node lost its liveness stream but still heartbeats", "node", n.ID)
		c.followers.unfollow(n.ID)
	}
	last := n.HeartbeatAt
	if last == 0 {
		last = n.ConnectedAt
	}
	silent := now.Sub(time.UnixMilli(last))
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.watches[n.ID]
	if silent <= c.cfg.SuspectAfter {
		if w != nil && w.warned {
			c.log.Info("media node heartbeats are back", "node", n.ID)
		}
		delete(c.watches, n.ID)
		return false
	}
	if w == nil {
		w = &watch{}
		c.watches[n.ID] = w
	}
	if !w.checking {
		w.checking, w.checkedAt = true, now
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			err := c.check(ctx, nodeAddr{ID: n.ID, URI: n.URI})
			c.mu.Lock()
			w.checking, w.lastResult = false, err
			c.mu.Unlock()
		}()
	}
	if w.lastResult == nil && !w.checkedAt.IsZero() && !w.checking && !w.warned {
		w.warned = true
		c.log.Warn("media node stopped heartbeating but answers its health check", "node", n.ID, "silent", silent.Round(time.Millisecond))
	}
	return silent >= c.m.cfg.CrashWindow && w.lastResult != nil
}

// check asks a node's health endpoint whether it is alive.
func (c *Controller) check(ctx context.Context, n nodeAddr) error {
	return checkHealth(ctx, c.m.cfg.HTTPClient, n.URI)
}

// checkHealth asks GET <uri>/chorus/health, giving it 500 ms: an error
// unless the node answers 200.
func checkHealth(ctx context.Context, client *http.Client, uri string) error {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri+"/chorus/health", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func (c *Controller) forgetWatches(ids []protocol.NodeID) {
	known := map[protocol.NodeID]bool{}
	for _, id := range ids {
		known[id] = true
	}
	c.mu.Lock()
	for id := range c.watches {
		if !known[id] {
			delete(c.watches, id)
		}
	}
	c.mu.Unlock()
}

// declareCrashed marks a node crashed and emits nodeCrashed with the
// sessions it hosted. With a reconnection timeout no longer than the crash
// window (OpenVidu's default: 3 s) the node goes to terminating at once, as
// OpenVidu does; its sessions are then handled by sessionAction.
func (c *Controller) declareCrashed(ctx context.Context, leader protocol.MasterID, n store.MediaNodeInfo, now time.Time) {
	m := c.m
	sids, err := m.store.NodeSessions(ctx, n.ID)
	if err != nil {
		c.roundError("list sessions of "+string(n.ID), err)
		return
	}
	last := n.HeartbeatAt
	if ended := c.followers.lostAt(n.ID); !ended.IsZero() {
		last = ended.UnixMilli() // its liveness stream ended: it died then
	}
	restarted := n.Instance != 0 && n.StartedAt != 0 && n.StartedAt != n.Instance
	if restarted {
		last = now.UnixMilli() // it was silent for no time, and recovers at once
	}
	declared := false
	c.commit(ctx, leader, n.ID, "declare crashed", func(tx *store.NodesTx, cur *store.MediaNodeInfo) error {
		declared = false
		if cur.Crashed() || (cur.Status != Running && cur.Status != WaitingIdle) {
			return nil
		}
		ts := now.UnixMilli()
		cur.CrashedAt, cur.DisconnectedAt = ts, last
		tx.Emit(events.NewNodeCrashed(ts, m.cfg.ClusterID, eventNode(cur), events.RoleMediaNode, last, sids).Stored())
		if rt := m.cfg.ReconnectionTimeout; !restarted && rt >= 0 && rt <= m.cfg.CrashWindow {
			if err := m.transition(tx, cur, Terminating, ts); err != nil {
				return err
			}
		}
		declared = true
		return nil
	})
	if declared {
		c.log.Warn("media node crashed", "node", n.ID, "silent_since", time.UnixMilli(last).Format(time.RFC3339Nano),
			"sessions", len(sids), "policy", m.cfg.CrashPolicy)
		c.cfg.OnAction(ActionCrash)
		c.wakeRound() // its sessions are handled in the next round
	}
}

// handleCrashed follows a crashed node: once its sessions are handled, it
// recovers if it reports again, or is terminated when the reconnection
// timeout passes.
func (c *Controller) handleCrashed(ctx context.Context, leader protocol.MasterID, n store.MediaNodeInfo, sessions int64, now time.Time) {
	m := c.m
	if sessions > 0 || (n.Status != Running && n.Status != WaitingIdle) {
		return
	}
	back := n.HeartbeatAt > n.CrashedAt && n.Fresh(now, c.cfg.SuspectAfter)
	switch {
	case back:
		recovered := false
		c.commit(ctx, leader, n.ID, "recover", func(tx *store.NodesTx, cur *store.MediaNodeInfo) error {
			recovered = false
			if !cur.Crashed() {
				return nil
			}
			cur.CrashedAt, cur.DisconnectedAt = 0, 0
			cur.Instance = n.StartedAt
			tx.Emit(events.NewNodeRecovered(now.UnixMilli(), m.cfg.ClusterID, eventNode(cur), events.RoleMediaNode).Stored())
			recovered = true
			return nil
		})
		if recovered {
			c.cfg.OnAction(ActionRecover)
			c.log.Info("media node recovered", "node", n.ID)
		}
	case m.cfg.ReconnectionTimeout >= 0 && now.Sub(time.UnixMilli(n.CrashedAt)) >= m.cfg.ReconnectionTimeout:
		c.commit(ctx, leader, n.ID, "terminate crashed node", func(tx *store.NodesTx, cur *store.MediaNodeInfo) error {
			if !cur.Crashed() || (cur.Status != Running && cur.Status != WaitingIdle) {
				return nil
			}
			return m.transition(tx, cur, Terminating, now.UnixMilli())
		})
	}
}
