package medianodes

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/chorus-rtc/chorus/master/events"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// PlanConfig is the autoscaling configuration, as the autoscaling event's
// system.config shows it (OPENVIDU_PRO_CLUSTER_AUTOSCALING_MAX_NODES,
// _MIN_NODES, _MAX_LOAD, _MIN_LOAD; loads in percent).
type PlanConfig struct {
	MaxNodes   int     `json:"maxNodes"`
	MinNodes   int     `json:"minNodes"`
	MaxAvgLoad float64 `json:"maxAvgLoad"`
	MinAvgLoad float64 `json:"minAvgLoad"`
}

// Validate lists the configuration's problems.
func (c PlanConfig) Validate() error {
	var problems []string
	if c.MinNodes < 0 || c.MaxNodes < 1 || c.MinNodes > c.MaxNodes {
		problems = append(problems, fmt.Sprintf("nodes: need 0 <= minNodes (%d) <= maxNodes (%d) and maxNodes >= 1", c.MinNodes, c.MaxNodes))
	}
	if c.MinAvgLoad < 0 || c.MaxAvgLoad > 100 || c.MaxAvgLoad <= 0 || c.MinAvgLoad >= c.MaxAvgLoad {
		problems = append(problems, fmt.Sprintf("loads: need 0 <= minAvgLoad (%g) < maxAvgLoad (%g) <= 100", c.MinAvgLoad, c.MaxAvgLoad))
	}
	if len(problems) > 0 {
		return fmt.Errorf("autoscaling: %s", strings.Join(problems, "; "))
	}
	return nil
}

// PlanNode is a node as the autoscaling event lists it. LaunchingTime is not
// part of the event: it orders launching and canceled nodes when known.
type PlanNode struct {
	ID            protocol.NodeID `json:"id"`
	EnvironmentID *string         `json:"environmentId"`
	IP            *string         `json:"ip"`
	Load          float64         `json:"load"`
	Status        string          `json:"status"`
	LaunchingTime int64           `json:"-"`
	Sessions      int64           `json:"-"`
}

// PlanStatus is the cluster as the autoscaling event's system.status shows
// it. Plan computes the sums from the lists.
type PlanStatus struct {
	NumNodes                    int        `json:"numNodes"`
	TotalLoad                   float64    `json:"totalLoad"`
	AvgLoad                     float64    `json:"avgLoad"`
	RunningNodes                []PlanNode `json:"runningNodes"`
	LaunchingNodes              []PlanNode `json:"launchingNodes"`
	WaitingIdleToTerminateNodes []PlanNode `json:"waitingIdleToTerminateNodes"`
	CanceledNodes               []PlanNode `json:"canceledNodes"`
}

// Decision is what one autoscaling round decides.
type Decision struct {
	Reason string
	Status PlanStatus
	// Scale out: waiting-idle-to-terminate nodes back to running, canceled
	// nodes back to launching, then new nodes.
	Revive   []PlanNode
	Uncancel []PlanNode
	NewNodes int
	// Scale in: launching nodes canceled, running nodes drained.
	Cancel []PlanNode
	Drain  []PlanNode
}

// Empty reports whether the decision changes nothing ("Autoscaling doing
// nothing": no event).
func (d Decision) Empty() bool {
	return len(d.Revive)+len(d.Uncancel)+d.NewNodes+len(d.Cancel)+len(d.Drain) == 0
}

// Plan is the autoscaling algorithm of OpenVidu Pro's scalability page,
// with the two things the page leaves open chosen here:
//
//   - numNodes counts running and launching nodes; totalLoad sums the load of
//     running and waiting-idle-to-terminate nodes; avgLoad = totalLoad /
//     numNodes (0 without nodes).
//   - The cluster scales out when numNodes < minNodes, or avgLoad > maxLoad
//     and numNodes < maxNodes; it scales in when numNodes > maxNodes, or
//     avgLoad < minLoad and numNodes > minNodes.
//   - How many (our choice): the target is the node count that brings the
//     average to the middle of [minLoad, maxLoad], ceil(totalLoad / mid),
//     clamped to [minNodes, maxNodes]. Aiming at the middle rather than at
//     the violated limit leaves room on both sides, so one decision is not
//     undone by the next small change of load.
//   - Scale out revives waiting-idle-to-terminate nodes first (the most
//     loaded first: they already host sessions), then un-cancels canceled
//     nodes (the oldest launch first), then launches new ones.
//   - Scale in cancels launching nodes first (the most recent launch first:
//     the furthest from running; on equal times the later-listed), then
//     drains running nodes, the least loaded first.
//
// The cool-down between decisions is the Autoscaler's.
func Plan(cfg PlanConfig, st PlanStatus) Decision {
	st.NumNodes = len(st.RunningNodes) + len(st.LaunchingNodes)
	st.TotalLoad = 0
	for _, n := range slices.Concat(st.RunningNodes, st.WaitingIdleToTerminateNodes) {
		st.TotalLoad += n.Load
	}
	st.TotalLoad = math.Round(st.TotalLoad*100) / 100
	st.AvgLoad = 0
	if st.NumNodes > 0 {
		st.AvgLoad = st.TotalLoad / float64(st.NumNodes)
	}
	d := Decision{Status: st}
	mid := (cfg.MinAvgLoad + cfg.MaxAvgLoad) / 2
	target := min(max(int(math.Ceil(st.TotalLoad/mid)), cfg.MinNodes), cfg.MaxNodes)
	n := st.NumNodes
	switch {
	case n < cfg.MinNodes || (st.AvgLoad > cfg.MaxAvgLoad && n < cfg.MaxNodes):
		k := max(target-n, cfg.MinNodes-n)
		waiting := slices.SortedStableFunc(slices.Values(st.WaitingIdleToTerminateNodes), func(a, b PlanNode) int { return cmp.Compare(b.Load, a.Load) })
		canceled := slices.SortedStableFunc(slices.Values(st.CanceledNodes), func(a, b PlanNode) int { return cmp.Compare(a.LaunchingTime, b.LaunchingTime) })
		d.Revive = waiting[:min(k, len(waiting))]
		k -= len(d.Revive)
		d.Uncancel = canceled[:min(k, len(canceled))]
		k -= len(d.Uncancel)
		d.NewNodes = max(k, 0)
	case n > cfg.MaxNodes || (st.AvgLoad < cfg.MinAvgLoad && n > cfg.MinNodes):
		k := max(n-target, 0)
		launching := slices.Clone(st.LaunchingNodes)
		slices.Reverse(launching)
		launching = slices.SortedStableFunc(slices.Values(launching), func(a, b PlanNode) int { return cmp.Compare(b.LaunchingTime, a.LaunchingTime) })
		running := slices.SortedStableFunc(slices.Values(st.RunningNodes), func(a, b PlanNode) int {
			return cmp.Or(cmp.Compare(a.Load, b.Load), cmp.Compare(a.Sessions, b.Sessions))
		})
		d.Cancel = launching[:min(k, len(launching))]
		k -= len(d.Cancel)
		d.Drain = running[:min(k, len(running))]
	}
	d.Reason = reason(cfg, st, d)
	return d
}

// reason words a decision as OpenVidu Pro does.
func reason(cfg PlanConfig, st PlanStatus, d Decision) string {
	var b strings.Builder
	pct := func(v float64) string { return fmt.Sprintf("%.2f%%", v) }
	limits := fmt.Sprintf("[%s, %s]", pct(cfg.MinAvgLoad), pct(cfg.MaxAvgLoad))
	switch {
	case st.NumNodes < cfg.MinNodes:
		fmt.Fprintf(&b, "Minimum number of nodes (%d) not reached. ", cfg.MinNodes)
	case st.NumNodes > cfg.MaxNodes:
		fmt.Fprintf(&b, "Maximum number of nodes (%d) exceeded. ", cfg.MaxNodes)
	}
	switch {
	case st.AvgLoad > cfg.MaxAvgLoad:
		fmt.Fprintf(&b, "The cluster average load (%s) is above its limits %s ", pct(st.AvgLoad), limits)
		if st.NumNodes < cfg.MaxNodes {
			fmt.Fprintf(&b, "and the upper limit of Media Nodes (%d) has not been reached. ", cfg.MaxNodes)
		} else {
			fmt.Fprintf(&b, "but the upper limit of Media Nodes (%d) has already been reached. ", cfg.MaxNodes)
		}
	case st.AvgLoad < cfg.MinAvgLoad:
		fmt.Fprintf(&b, "The cluster average load (%s) is below its limits %s ", pct(st.AvgLoad), limits)
		if st.NumNodes > cfg.MinNodes {
			fmt.Fprintf(&b, "and the lower limit of Media Nodes (%d) has not been reached. ", cfg.MinNodes)
		} else {
			fmt.Fprintf(&b, "but the lower limit of Media Nodes (%d) has already been reached. ", cfg.MinNodes)
		}
	default:
		fmt.Fprintf(&b, "The cluster average load is within the range %s. ", limits)
	}
	fmt.Fprintf(&b, "Current number of active nodes is %d (%d launching and %d running). ",
		st.NumNodes, len(st.LaunchingNodes), len(st.RunningNodes))
	for _, part := range []struct {
		n    int
		text string
	}{
		{len(d.Revive), "waiting-idle-to-terminate Media Nodes will be returned to running status"},
		{len(d.Uncancel), "canceled Media Nodes will be returned to launching status"},
		{d.NewNodes, "new Media Nodes will be launched"},
		{len(d.Cancel), "launching Media Nodes will be canceled"},
		{len(d.Drain), "Media Nodes will be terminated"},
	} {
		if part.n > 0 {
			fmt.Fprintf(&b, "%d %s. ", part.n, part.text)
		}
	}
	return strings.TrimSpace(b.String())
}

// Event is the decision's autoscaling event (without timestamp order
// concerns: fields in the documented order). launch.total counts every node
// that goes (back) towards running: new, revived and un-canceled, as the
// documentation defines it.
func (d Decision) Event(now int64, clusterID string, cfg PlanConfig) events.Event {
	list := func(nodes []PlanNode) []PlanNode {
		if nodes == nil {
			return []PlanNode{}
		}
		return nodes
	}
	st := d.Status
	st.RunningNodes, st.LaunchingNodes = list(st.RunningNodes), list(st.LaunchingNodes)
	st.WaitingIdleToTerminateNodes, st.CanceledNodes = list(st.WaitingIdleToTerminateNodes), list(st.CanceledNodes)
	launch := protocol.Object{}.With("total", d.NewNodes+len(d.Revive)+len(d.Uncancel)).With("newNodes", d.NewNodes).
		With("waitingIdleToTerminateNodes", list(d.Revive)).With("canceledNodes", list(d.Uncancel))
	terminate := protocol.Object{}.With("total", len(d.Cancel)+len(d.Drain)).
		With("runningNodes", list(d.Drain)).With("launchingNodes", list(d.Cancel))
	return events.Event{Name: events.Autoscaling, Fields: protocol.Object{}.
		With("clusterId", clusterID).With("reason", d.Reason).
		With("mediaNodes", protocol.Object{}.With("launch", launch).With("terminate", terminate)).
		With("system", protocol.Object{}.With("config", cfg).With("status", st)).
		With("timestamp", now)}
}

// AutoscalerConfig configures the Autoscaler.
type AutoscalerConfig struct {
	Manager *Manager
	Plan    PlanConfig
	// Interval between two evaluations (OPENVIDU_PRO_CLUSTER_AUTOSCALING_INTERVAL).
	Interval time.Duration
	// CoolDown is the least time between two decisions: a decision's
	// effect (a node launching, load moving to new sessions) takes a while
	// to show in the load.
	CoolDown time.Duration
	// Drain is the deletion strategy of scaled-in running nodes:
	// when-no-sessions (OpenVidu's) or migrate.
	Drain string
	// StartupGrace: in a cluster that has never made a decision, the
	// first one waits this long after the controller took the lease, so
	// that the media nodes starting with the cluster register (and are
	// adopted) first; deciding on an empty registry would launch nodes
	// and then scale the extra ones in. A controller taking over a
	// cluster that has decided before decides at once.
	StartupGrace time.Duration
	Logger       *slog.Logger
}

// Autoscaler applies Plan on the controller.
type Autoscaler struct {
	cfg      AutoscalerConfig
	m        *Manager
	log      *slog.Logger
	lastRun  time.Time
	ledSince time.Time // when this master last became the controller
}

// Lead tells the autoscaler that this master became the controller at now
// (the start of AutoscalerConfig.StartupGrace). Called from the
// controller's goroutine, like Round.
func (a *Autoscaler) Lead(now time.Time) { a.ledSince = now }

// NewAutoscaler returns an Autoscaler.
func NewAutoscaler(cfg AutoscalerConfig) *Autoscaler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Autoscaler{cfg: cfg, m: cfg.Manager, log: cfg.Logger}
}

// statusOf describes the nodes as the autoscaling event lists them. Nodes
// declared crashed count nowhere: they serve nobody.
func statusOf(nodes map[protocol.NodeID]*store.MediaNodeInfo, sessions map[protocol.NodeID]int64) PlanStatus {
	var st PlanStatus
	ids := slices.Sorted(func(yield func(protocol.NodeID) bool) {
		for id := range nodes {
			if !yield(id) {
				return
			}
		}
	})
	slices.SortStableFunc(ids, func(a, b protocol.NodeID) int { return cmp.Compare(nodes[a].LaunchingTime, nodes[b].LaunchingTime) })
	for _, id := range ids {
		n := nodes[id]
		if n.Crashed() {
			continue
		}
		pn := PlanNode{ID: n.ID, Load: n.Load, Status: n.Status, LaunchingTime: n.LaunchingTime, Sessions: sessions[n.ID]}
		if n.EnvironmentID != "" {
			pn.EnvironmentID = &n.EnvironmentID
		}
		if n.IP != "" {
			pn.IP = &n.IP
		}
		switch n.Status {
		case Running:
			st.RunningNodes = append(st.RunningNodes, pn)
		case Launching:
			pn.Load = 0
			st.LaunchingNodes = append(st.LaunchingNodes, pn)
		case WaitingIdle:
			st.WaitingIdleToTerminateNodes = append(st.WaitingIdleToTerminateNodes, pn)
		case Canceled:
			pn.Load = 0
			st.CanceledNodes = append(st.CanceledNodes, pn)
		}
	}
	return st
}

// Round evaluates the cluster if the interval passed, and applies a decision
// unless the last one is younger than the cool-down. The decision, its
// autoscaling event and every status change it makes commit together under
// the controller lease: a controller that lost the lease decides nothing,
// and its successor sees the decision (and the cool-down) in Redis.
func (a *Autoscaler) Round(ctx context.Context, leader protocol.MasterID, now time.Time) error {
	if now.Sub(a.lastRun) < a.cfg.Interval {
		return nil
	}
	a.lastRun = now
	m := a.m
	var d Decision
	var launches []store.MediaNodeInfo
	err := m.store.UpdateMediaNodes(ctx, leader, func(tx *store.NodesTx) error {
		d, launches = Decision{}, nil
		if now.UnixMilli()-tx.Autoscaling.LastDecisionAt < a.cfg.CoolDown.Milliseconds() {
			return nil
		}
		if tx.Autoscaling.Decisions == 0 && now.Sub(a.ledSince) < a.cfg.StartupGrace {
			return nil
		}
		d = Plan(a.cfg.Plan, statusOf(tx.Nodes, tx.Sessions))
		if d.Empty() {
			return nil
		}
		ts := now.UnixMilli()
		tx.Emit(d.Event(ts, m.cfg.ClusterID, a.cfg.Plan).Stored())
		tx.Autoscaling.LastDecisionAt, tx.Autoscaling.Decisions = ts, tx.Autoscaling.Decisions+1
		for _, pn := range d.Revive {
			if err := m.transition(tx, tx.Nodes[pn.ID], Running, ts); err != nil {
				return err
			}
		}
		for _, pn := range d.Uncancel {
			if err := m.transition(tx, tx.Nodes[pn.ID], Launching, ts); err != nil {
				return err
			}
		}
		for _, pn := range d.Cancel {
			if err := m.transition(tx, tx.Nodes[pn.ID], Canceled, ts); err != nil {
				return err
			}
		}
		for _, pn := range d.Drain {
			n := tx.Nodes[pn.ID]
			if err := m.transition(tx, n, WaitingIdle, ts); err != nil {
				return err
			}
			if tx.Sessions[n.ID] == 0 {
				if err := m.transition(tx, n, Terminating, ts); err != nil {
					return err
				}
			} else if a.cfg.Drain == DropMigrate {
				n.Drain = DropMigrate
			}
		}
		if m.cfg.Provider.CanLaunch() {
			for i := 0; i < d.NewNodes; i++ {
				n := tx.Create(store.MediaNodeInfo{ID: protocol.NewMediaNodeID(), Provider: m.cfg.Provider.Name()})
				if err := m.transition(tx, n, Launching, ts); err != nil {
					return err
				}
				launches = append(launches, *n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if d.Empty() {
		return nil
	}
	a.log.Info("autoscaling", "reason", d.Reason)
	for range d.Drain {
		m.cfg.OnAction(ActionDrop)
	}
	for _, n := range launches {
		m.cfg.OnAction(ActionLaunch)
		if _, err := m.startLaunched(ctx, n); err != nil {
			a.log.Warn("autoscaling launch failed", "node", n.ID, "err", err)
		}
	}
	return nil
}

// PlanInput is what `chorus autoscale plan` reads: the autoscaling event's
// system object.
type PlanInput struct {
	Config PlanConfig `json:"config"`
	Status PlanStatus `json:"status"`
}

// PlanEvent runs Plan on a JSON PlanInput and returns the autoscaling event
// it decides, as a CDR line (`{"autoscaling": {...}}`, indented), or nil
// when it decides nothing. The status's sums are recomputed from its lists.
func PlanEvent(input []byte, clusterID string, now int64) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.DisallowUnknownFields()
	var in PlanInput
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf(`read {"config": {...}, "status": {...}}: %w`, err)
	}
	if err := in.Config.Validate(); err != nil {
		return nil, err
	}
	d := Plan(in.Config, in.Status)
	if d.Empty() {
		return nil, nil
	}
	e := d.Event(now, clusterID, in.Config)
	return json.MarshalIndent(protocol.Object{}.With(e.Name, e.Fields), "", "  ")
}
