package medianodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/chorus-rtc/chorus/master/events"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Crash policies: what happens to the sessions of a crashed node.
const (
	// PolicyMigrate re-pins them to a healthy node; clients re-establish
	// their media there through openvidu-browser's reconnection paths.
	PolicyMigrate = "migrate"
	// PolicyClose closes them with reason nodeCrashed, as OpenVidu 2 does.
	PolicyClose = "close"
)

// Deletion strategies of DELETE /media-nodes/{id} (OpenVidu's, plus migrate).
const (
	DropNow            = "now"
	DropIfNoSessions   = "if-no-sessions"
	DropWhenNoSessions = "when-no-sessions"
	// DropMigrate moves the node's sessions to other nodes, then terminates
	// it: scale-in without waiting for conferences to end (Chorus's own).
	DropMigrate = "migrate"
)

// Session close reasons used here (OpenVidu's).
const (
	ReasonNodeCrashed           = "nodeCrashed"
	ReasonMediaServerDisconnect = "mediaServerDisconnect"
)

// Sessions is what the manager needs from the session service.
type Sessions interface {
	// CloseNodeSession closes a session pinned to the node; every
	// participant is evicted with the reason (sessionDestroyed,
	// participantLeft ... carry it). A session that no longer exists is
	// only unpinned.
	CloseNodeSession(ctx context.Context, sid protocol.SessionID, node protocol.NodeID, reason string) error
	// MigrateSession moves a session off the media node from (crashed, or
	// draining when alive) to the best other node. It returns an error
	// wrapping ErrNoMediaNode when no node can take it; a session that no
	// longer exists (or left the node already) is only unpinned.
	MigrateSession(ctx context.Context, sid protocol.SessionID, from protocol.NodeID, alive bool) error
	// NudgePublishers helps the publishers of a migrated session re-publish
	// sooner; it returns once they did, or gave up, or ctx ends.
	// silentSince is when the crashed node went silent (zero after a
	// drain).
	NudgePublishers(ctx context.Context, sid protocol.SessionID, silentSince time.Time)
}

// ErrNoMediaNode means no media node can take a session.
var ErrNoMediaNode = errors.New("no media node available")

// Config configures a Manager.
type Config struct {
	Store     *store.NodeRegistry
	Provider  Provider
	ClusterID string
	// HTTPClient checks nodes directly (crash detection, registration by URI).
	HTTPClient *http.Client
	// ClusterSecret authenticates the controller's liveness streams to the
	// nodes' internal API.
	ClusterSecret string
	Sessions      Sessions
	// LaunchTimeout bounds launching: a node that has not reported by then
	// ends in failed.
	LaunchTimeout time.Duration
	// CrashWindow: a node silent this long, and failing direct checks, is
	// declared crashed (OpenVidu's 3 s of silent retries).
	CrashWindow time.Duration
	// ReconnectionTimeout is how long a crashed node may take to come back
	// (nodeRecovered) before it is terminated; negative: forever
	// (OPENVIDU_PRO_CLUSTER_RECONNECTION_TIMEOUT = -1).
	ReconnectionTimeout time.Duration
	// CrashPolicy is PolicyMigrate or PolicyClose.
	CrashPolicy string
	// AutoAdopt adopts nodes that register themselves; without it they wait
	// for POST /media-nodes {"uri"} or PUT /media-nodes (autodiscovery).
	AutoAdopt bool
	// OnAction, if set, is told of each launch and drop this master
	// decided (ActionLaunch, ActionDrop: by REST or by its autoscaler),
	// for the master's metrics.
	OnAction func(action string)
	Logger   *slog.Logger
}

// Manager runs the media-node operations of the REST API; every master has
// one. The Controller (on one master at a time) drives what happens by
// itself: adoption, crash detection, termination, autoscaling.
type Manager struct {
	cfg   Config
	store *store.NodeRegistry
	log   *slog.Logger
}

// NewManager returns a Manager.
func NewManager(cfg Config) *Manager {
	if cfg.OnAction == nil {
		cfg.OnAction = func(string) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 3 * time.Second}
	}
	return &Manager{cfg: cfg, store: cfg.Store, log: cfg.Logger}
}

// Provider returns the manager's provider.
func (m *Manager) Provider() Provider { return m.cfg.Provider }

// ErrorKind is what made a media-node operation fail; restapi answers each
// with the status OpenVidu Pro's media-node API documents.
type ErrorKind uint8

// The kinds of media-node failure.
const (
	// NodeNotFound: no media node with that id (or at that URI).
	NodeNotFound ErrorKind = iota
	// CannotLaunch: the provider cannot launch nodes (static: a "uri" is
	// required).
	CannotLaunch
	// BadRequest: a parameter is invalid for the node or its status.
	BadRequest
	// Conflict: the node is registered already, or has sessions that
	// cannot move.
	Conflict
	// LaunchFailed: the launched node never came up (waited for).
	LaunchFailed
	// LaunchError: the provider failed to start a node (not waited for).
	LaunchError
	// StatusTimeout: the node did not reach the expected status in time.
	StatusTimeout
)

// Error is a failed media-node operation: its kind and OpenVidu's message
// (its media-node API answers errors as text/plain).
type Error struct {
	Kind    ErrorKind
	Message string
}

func (e *Error) Error() string { return e.Message }

func errorf(kind ErrorKind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

func notFound(id protocol.NodeID) *Error {
	return errorf(NodeNotFound, "Media Node %q does not exist", id)
}

// eventNode describes a node in cluster events.
func eventNode(n *store.MediaNodeInfo) events.MediaNode {
	return events.MediaNode{ID: string(n.ID), EnvironmentID: n.EnvironmentID, IP: n.IP, URI: n.URI}
}

// transition moves a node to another status inside a transaction and emits
// mediaNodeStatusChanged; an impossible transition is refused.
func (m *Manager) transition(tx *store.NodesTx, n *store.MediaNodeInfo, to string, now int64) error {
	if !Allowed(n.Status, to) {
		return fmt.Errorf("media node %s cannot go from %q to %q", n.ID, n.Status, to)
	}
	from := n.Status
	n.Status = to
	if from == "" {
		n.LaunchingTime = now
	}
	if to == Running {
		n.Drain = ""
	}
	tx.Emit(events.NewMediaNodeStatusChanged(now, m.cfg.ClusterID, eventNode(n), from, to).Stored())
	if to == Terminated || to == Failed {
		tx.Remove(n.ID)
	}
	return nil
}

// List returns every node of the cluster (any status until terminated).
func (m *Manager) List(ctx context.Context) ([]store.MediaNodeInfo, error) {
	return m.store.MediaNodes(ctx)
}

// Get returns one node, or an *Error 404.
func (m *Manager) Get(ctx context.Context, id protocol.NodeID) (store.MediaNodeInfo, error) {
	n, err := m.store.MediaNode(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return n, notFound(id)
	}
	return n, err
}

// Launch starts a new node through the provider (POST /media-nodes): its
// record enters launching at once; with wait, Launch returns once it is
// running (or failed). A provider that cannot launch (static) answers 501,
// as OpenVidu on premises does without a "uri". With an idempotency key, a
// retry of the same request gets the node the first attempt launched.
func (m *Manager) Launch(ctx context.Context, wait bool, idempotencyKey string) (store.MediaNodeInfo, error) {
	if !m.cfg.Provider.CanLaunch() {
		return store.MediaNodeInfo{}, errorf(CannotLaunch,
			`No parameter "uri" found in the body request. With the %s media node provider it must exist and be a string with a valid URI format`,
			m.cfg.Provider.Name())
	}
	id := protocol.NewMediaNodeID()
	if idempotencyKey != "" {
		reserved, err := m.store.ReserveMediaNodeID(ctx, idempotencyKey, id)
		if err != nil {
			return store.MediaNodeInfo{}, err
		}
		if reserved != id {
			return m.relaunched(ctx, reserved, wait)
		}
	}
	n, err := m.launch(ctx, id, "")
	if n.ID != "" { // recorded as launching: the provider was asked
		m.cfg.OnAction(ActionLaunch)
	}
	if err != nil {
		kind, msg := LaunchError, "Error while launching media node: "
		if wait {
			kind, msg = LaunchFailed, "Error launching new instance: "
		}
		return store.MediaNodeInfo{}, errorf(kind, "%s%v", msg, err)
	}
	if !wait {
		return n, nil
	}
	return m.waitRunning(ctx, n.ID)
}

// relaunched answers a retried launch with the node the first attempt made.
func (m *Manager) relaunched(ctx context.Context, id protocol.NodeID, wait bool) (store.MediaNodeInfo, error) {
	n, err := m.store.MediaNode(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return n, errorf(LaunchFailed, "Error launching new instance: media node %s failed to start", id)
	}
	if err != nil || !wait {
		return n, err
	}
	return m.waitRunning(ctx, id)
}

// waitRunning waits until a launched node runs, or fails.
func (m *Manager) waitRunning(ctx context.Context, id protocol.NodeID) (store.MediaNodeInfo, error) {
	return m.waitFor(ctx, id, m.cfg.LaunchTimeout+5*time.Second, func(n store.MediaNodeInfo, exists bool) (bool, error) {
		switch {
		case !exists:
			return true, errorf(LaunchFailed, "Error launching new instance: media node %s failed to start", n.ID)
		case n.Status == Running:
			return true, nil
		}
		return false, nil
	})
}

// launch creates a launching record under id and asks the provider to start
// it. On failure the record goes to failed (and away) before the error
// returns.
func (m *Manager) launch(ctx context.Context, id protocol.NodeID, leader protocol.MasterID) (store.MediaNodeInfo, error) {
	now := store.NowMillis()
	var created store.MediaNodeInfo
	err := m.store.UpdateMediaNodes(ctx, leader, func(tx *store.NodesTx) error {
		n := tx.Create(store.MediaNodeInfo{ID: id, Provider: m.cfg.Provider.Name()})
		if err := m.transition(tx, n, Launching, now); err != nil {
			return err
		}
		created = *n
		return nil
	})
	if err != nil {
		return created, err
	}
	return m.startLaunched(ctx, created)
}

// startLaunched asks the provider to start a node whose record is launching
// and records its environment id.
func (m *Manager) startLaunched(ctx context.Context, n store.MediaNodeInfo) (store.MediaNodeInfo, error) {
	envID, launchErr := m.cfg.Provider.Launch(ctx, n.ID)
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := m.store.UpdateMediaNodes(bctx, "", func(tx *store.NodesTx) error {
		cur := tx.Nodes[n.ID]
		if cur == nil {
			return nil
		}
		if launchErr != nil {
			if cur.Status == Launching || cur.Status == Canceled {
				if cur.Status == Canceled {
					return m.transition(tx, cur, Terminating, store.NowMillis())
				}
				return m.transition(tx, cur, Failed, store.NowMillis())
			}
			return nil
		}
		cur.EnvironmentID = envID
		n = *cur
		return nil
	})
	if launchErr != nil {
		m.log.Warn("media node launch failed", "node", n.ID, "provider", m.cfg.Provider.Name(), "err", launchErr)
		return n, launchErr
	}
	if err != nil {
		return n, fmt.Errorf("record the environment id of %s: %w", n.ID, err)
	}
	m.log.Info("media node launched", "node", n.ID, "provider", m.cfg.Provider.Name(), "environmentId", envID)
	return n, nil
}

// Register adds a running node by the URL of its internal API (POST
// /media-nodes {"uri"}): OpenVidu's on-premises way of adding nodes. The node
// must be a Chorus media node reporting to this cluster's Redis.
func (m *Manager) Register(ctx context.Context, uri, environmentID string) (store.MediaNodeInfo, error) {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return store.MediaNodeInfo{}, errorf(BadRequest,
			`Invalid parameter "uri". It must be a string with a valid URI format (the node's internal API, http://host:port)`)
	}
	uri = strings.TrimRight(uri, "/")
	nodes, err := m.store.MediaNodes(ctx)
	if err != nil {
		return store.MediaNodeInfo{}, err
	}
	for _, n := range nodes {
		if n.URI == uri {
			return store.MediaNodeInfo{}, errorf(Conflict, "Media Node at %q is already registered", uri)
		}
	}
	id, err := m.probe(ctx, uri)
	if err != nil {
		return store.MediaNodeInfo{}, errorf(NodeNotFound, "Media Node at %q could not be reached: %v", uri, err)
	}
	for _, n := range nodes {
		if n.ID == id {
			return store.MediaNodeInfo{}, errorf(Conflict, "Media Node at %q is already registered as %s", uri, id)
		}
	}
	unadopted, err := m.store.UnadoptedMediaNodes(ctx, m.cfg.CrashWindow)
	if err != nil {
		return store.MediaNodeInfo{}, err
	}
	for _, hb := range unadopted {
		if hb.ID == id {
			n, err := m.adopt(ctx, "", hb, environmentID)
			if errors.Is(err, errAlreadyKnown) {
				return n, errorf(Conflict, "Media Node at %q is already registered as %s", uri, id)
			}
			return n, err
		}
	}
	return store.MediaNodeInfo{}, errorf(NodeNotFound,
		"Media Node at %q (%s) does not report to this cluster: check its cluster id and Redis", uri, id)
}

// probe asks a node's health endpoint for its id.
func (m *Manager) probe(ctx context.Context, uri string) (protocol.NodeID, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri+"/chorus/health", nil)
	if err != nil {
		return "", err
	}
	resp, err := m.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("health check answered %s", resp.Status)
	}
	var body struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || !strings.HasPrefix(body.ID, protocol.PrefixMediaNode) {
		return "", fmt.Errorf("not a Chorus media node")
	}
	return protocol.NodeID(body.ID), nil
}

var errAlreadyKnown = errors.New("media node already has a record")

// adopt gives a self-registered node a record: launching, then running at
// once since it already reports (two mediaNodeStatusChanged events, as
// OpenVidu emits for a node it connects to).
func (m *Manager) adopt(ctx context.Context, leader protocol.MasterID, hb store.MediaNodeInfo, environmentID string) (store.MediaNodeInfo, error) {
	var out store.MediaNodeInfo
	err := m.store.UpdateMediaNodes(ctx, leader, func(tx *store.NodesTx) error {
		if tx.Nodes[hb.ID] != nil {
			return errAlreadyKnown
		}
		now := store.NowMillis()
		n := tx.Create(store.MediaNodeInfo{ID: hb.ID, EnvironmentID: environmentID, URI: hb.ReportedURI, IP: hb.ReportedIP,
			Provider: ProviderStatic})
		if err := m.transition(tx, n, Launching, now); err != nil {
			return err
		}
		connect(n, hb, now)
		if err := m.transition(tx, n, Running, now); err != nil {
			return err
		}
		out = *n
		return nil
	})
	if err == nil {
		m.log.Info("media node adopted", "node", out.ID, "uri", out.URI)
	}
	return out, err
}

// connect records that the cluster reached the node (OpenVidu's
// connectionTime), and the node process it reached.
func connect(n *store.MediaNodeInfo, hb store.MediaNodeInfo, now int64) {
	n.ConnectedAt, n.Instance = now, hb.StartedAt
	if hb.ReportedURI != "" {
		n.URI = hb.ReportedURI
	}
	if hb.ReportedIP != "" {
		n.IP = hb.ReportedIP
	}
	n.Load, n.StartedAt, n.HeartbeatAt = hb.Load, hb.StartedAt, hb.HeartbeatAt
}

// Discover adopts every node that reports to the cluster without a record
// (PUT /media-nodes, OpenVidu's autodiscovery) and returns them.
func (m *Manager) Discover(ctx context.Context) ([]store.MediaNodeInfo, error) {
	unadopted, err := m.store.UnadoptedMediaNodes(ctx, m.cfg.CrashWindow)
	if err != nil {
		return nil, err
	}
	out := []store.MediaNodeInfo{}
	for _, hb := range unadopted {
		n, err := m.adopt(ctx, "", hb, "")
		if errors.Is(err, errAlreadyKnown) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, n)
	}
	return out, nil
}

// DropResult says how a drop went.
type DropResult int

// Drop results.
const (
	// Dropping: the node is terminating (200, or 204 once terminated with wait).
	Dropping DropResult = iota
	// Draining: the node waits for its sessions to end or move (202).
	Draining
	// Dropped: the node is terminated (204; only with wait).
	Dropped
)

// ValidDropStrategy reports whether s is a deletion strategy.
func ValidDropStrategy(s string) bool {
	switch s {
	case DropNow, DropIfNoSessions, DropWhenNoSessions, DropMigrate:
		return true
	}
	return false
}

// Drop removes a node (DELETE /media-nodes/{id}) with OpenVidu's deletion
// strategies: now (its sessions are closed with reason
// mediaServerDisconnect), if-no-sessions (409 while it hosts sessions),
// when-no-sessions (waiting-idle-to-terminate until they end: 202), and
// Chorus's migrate (its sessions move to other nodes first: 202). The
// controller finishes the job: sessions, provider, terminated. With wait,
// Drop returns once the node is terminated (except while draining).
func (m *Manager) Drop(ctx context.Context, id protocol.NodeID, strategy string, wait bool) (store.MediaNodeInfo, DropResult, error) {
	if strategy == "" {
		strategy = DropIfNoSessions
	}
	if !ValidDropStrategy(strategy) {
		return store.MediaNodeInfo{}, 0, errorf(BadRequest,
			`Invalid parameter "deletion-strategy": %q. Must be one of "now", "if-no-sessions", "when-no-sessions", "migrate"`, strategy)
	}
	var out store.MediaNodeInfo
	var res DropResult
	err := m.store.UpdateMediaNodes(ctx, "", func(tx *store.NodesTx) error {
		n := tx.Nodes[id]
		if n == nil {
			return notFound(id)
		}
		now := store.NowMillis()
		busy := tx.Sessions[id] > 0
		res = Dropping
		switch n.Status {
		case Launching, Canceled:
			return errorf(BadRequest,
				`Cannot remove Media Node %s if status is %q: cancel its launch instead (PATCH {"status": "canceled"})`, id, n.Status)
		case Terminating:
			// Already on its way.
		case Running, WaitingIdle:
			switch {
			case strategy == DropIfNoSessions && busy:
				return errorf(Conflict, "Media Node %s has ongoing sessions", id)
			case strategy == DropMigrate && busy:
				if !otherNodeAccepts(tx, id) {
					return errorf(Conflict, "Media Node %s has ongoing sessions and no other Media Node can take them", id)
				}
				n.Drain = DropMigrate
				fallthrough
			case strategy == DropWhenNoSessions && busy:
				res = Draining
				if n.Status == Running {
					return m.transition(tx, n, WaitingIdle, now)
				}
			case strategy == DropWhenNoSessions || strategy == DropMigrate:
				// Idle: through waiting-idle-to-terminate, as OpenVidu does.
				if n.Status == Running {
					if err := m.transition(tx, n, WaitingIdle, now); err != nil {
						return err
					}
				}
				return m.transition(tx, n, Terminating, now)
			default:
				return m.transition(tx, n, Terminating, now)
			}
		}
		return nil
	})
	if err != nil {
		return out, 0, err
	}
	m.cfg.OnAction(ActionDrop)
	if out, err = m.Get(ctx, id); err != nil {
		out = store.MediaNodeInfo{ID: id, Status: Terminating}
	}
	if res == Draining && !(wait && strategy == DropMigrate) {
		return out, res, nil
	}
	if !wait {
		return out, res, nil
	}
	_, err = m.waitFor(ctx, id, 2*time.Minute, func(_ store.MediaNodeInfo, exists bool) (bool, error) { return !exists, nil })
	return out, Dropped, err
}

// otherNodeAccepts reports whether a node other than id accepts sessions.
func otherNodeAccepts(tx *store.NodesTx, id protocol.NodeID) bool {
	now := time.Now()
	for _, n := range tx.Nodes {
		if n.ID != id && n.AcceptsSessions(now) {
			return true
		}
	}
	return false
}

// SetStatus changes a node's status by request (PATCH /media-nodes/{id}):
// canceled from launching, launching from canceled, running from
// waiting-idle-to-terminate, waiting-idle-to-terminate from running (as
// DELETE when-no-sessions), terminating from running or
// waiting-idle-to-terminate (as DELETE now). It reports whether anything
// changed (OpenVidu answers 204 when the status is already the requested one).
func (m *Manager) SetStatus(ctx context.Context, id protocol.NodeID, status string) (store.MediaNodeInfo, bool, error) {
	cur, err := m.Get(ctx, id)
	if err != nil {
		return cur, false, err
	}
	if cur.Status == status {
		return cur, false, nil
	}
	switch status {
	case WaitingIdle:
		if cur.Status != Running {
			return cur, false, badStatus(status, "other than \"running\"")
		}
		n, _, err := m.Drop(ctx, id, DropWhenNoSessions, false)
		return n, err == nil, err
	case Terminating:
		switch cur.Status {
		case Running, WaitingIdle:
			n, _, err := m.Drop(ctx, id, DropNow, false)
			return n, err == nil, err
		case Canceled:
			return cur, false, badStatus(status, "\"canceled\". It will go to \"terminating\" by itself once its launch completes")
		default:
			return cur, false, badStatus(status, fmt.Sprintf("%q", cur.Status))
		}
	case Launching, Canceled, Running:
		var out store.MediaNodeInfo
		err := m.store.UpdateMediaNodes(ctx, "", func(tx *store.NodesTx) error {
			n := tx.Nodes[id]
			if n == nil {
				return notFound(id)
			}
			if !Allowed(n.Status, status) || (status == Running && n.Status != WaitingIdle) {
				return badStatus(status, "other than "+fmt.Sprintf("%q", requiredFrom(status)))
			}
			if err := m.transition(tx, n, status, store.NowMillis()); err != nil {
				return err
			}
			out = *n
			return nil
		})
		return out, err == nil, err
	}
	return cur, false, errorf(BadRequest, "Invalid parameter \"status\". Cannot be %q", status)
}

func requiredFrom(to string) string {
	switch to {
	case Launching:
		return Canceled
	case Canceled:
		return Launching
	}
	return WaitingIdle
}

func badStatus(to, current string) *Error {
	return errorf(BadRequest, "Invalid parameter \"status\". Cannot be %q if current status is %s", to, current)
}

// waitFor polls a node until done says so or the timeout passes.
func (m *Manager) waitFor(ctx context.Context, id protocol.NodeID, timeout time.Duration,
	done func(n store.MediaNodeInfo, exists bool) (bool, error)) (store.MediaNodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		n, err := m.store.MediaNode(ctx, id)
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, err
		}
		if !exists {
			n.ID = id
		}
		if ok, err := done(n, exists); ok || err != nil {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, errorf(StatusTimeout, "Media Node %s did not reach the expected status within %s", id, timeout)
		case <-t.C:
		}
	}
}
