// Package session is the master's session logic: every operation of the
// OpenVidu REST API and of the participants' JSON-RPC, on the cluster state in
// Redis (shared/store) and the media nodes' internal API (shared/mediaapi).
// It keeps no session state in memory: any master can serve any request.
//
// Each change of a session is one store transaction that also queues the
// notifications it causes, so participants see changes exactly once and in
// order. Media node calls happen outside transactions: an endpoint is first
// recorded as "creating", then created on the node, then marked "ready"; a
// request that dies half-way leaves a record that the connection's cleanup
// uses to release the endpoint (releases are idempotent).
package session

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Config configures a Service.
type Config struct {
	Store *store.Store
	// HTTPClient calls media nodes.
	HTTPClient    *http.Client
	ClusterSecret string
	// PublicURL is the cluster's public ws(s):// URL, the base of tokens.
	PublicURL string
	// Edition is the OpenVidu edition tokens announce (ce, pro or
	// enterprise): openvidu-browser and applications read it from the token.
	Edition string
	// Incarnation identifies this master in connection records.
	Incarnation *Incarnation
	// ClusterID appears in cluster events.
	ClusterID string
	// ReconnectGrace is how long a participant whose WebSocket broke may take
	// to come back before it is evicted with reason networkDisconnect.
	ReconnectGrace time.Duration
	// MaxLoad is the media nodes' load ceiling (0-100): a node at or above
	// it gets no new session while another is below (0: no ceiling).
	MaxLoad float64
	// Nudges say when, after a migration, the WebSockets of publishers that
	// have not re-published yet are closed, so that openvidu-browser
	// re-establishes its broken streams at once.
	Nudges Nudges
	// Defaults of new sessions (OPENVIDU_STREAMS_FORCED_VIDEO_CODEC, _ALLOW_TRANSCODING).
	ForcedVideoCodec string
	AllowTranscoding bool
	// TURN is handed to participants in joinRoom (ICEServers).
	TURN TURN
	// Limits bound what one participant can cost (zero values: none).
	Limits Limits
	// RecordingDefaults resolves a session's defaultRecordingProperties
	// into the properties of the recording a session in recordingMode
	// ALWAYS starts when its first participant publishes; nil (recording
	// off): such sessions are not recorded.
	RecordingDefaults func(defaults json.RawMessage) (RecordingProperties, error)
	Logger            *slog.Logger
}

// Limits bound what one participant can cost the cluster. OpenVidu 2 has
// none of them; the sizes follow LiveKit's limits (64 000 B of data, 512 KiB
// of metadata). Zero turns a limit off.
type Limits struct {
	// SignalDataBytes caps a signal's data and type together, in bytes
	// (SignalTooLarge).
	SignalDataBytes int
	// MetadataBytes caps a connection's metadata, in bytes: the client data
	// of joinRoom and the server data of a REST connection
	// (MetadataTooLarge).
	MetadataBytes int
	// OutboxBytes caps the bytes queued in Redis for one participant
	// (store.Tx.OutboxBytes); a transaction that takes a participant's
	// outbox past it evicts the participant with reason
	// forceDisconnectByServer and drops its queue.
	OutboxBytes int64
	// ParticipantsPerSession caps a session's active participants
	// (SessionFull).
	ParticipantsPerSession int
}

// Nudges schedule WebSocket closes after a migration: Count of them,
// Interval apart (Count 0: none). After a drain the first comes Delay after
// the migration; after a crash, CrashDelay after the node went silent
// (Chrome reports a silent node's ICE "disconnected" no sooner than ~5 s
// after its last packet: earlier closes only cost a reconnection), or at
// once if that is past.
type Nudges struct {
	Delay      time.Duration
	CrashDelay time.Duration
	Interval   time.Duration
	Count      int
}

// Service runs session operations.
type Service struct {
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	suspect atomic.Pointer[func(protocol.MasterID)]
}

// SetPeerSuspect registers what to call when a participant of another master
// reconnects here (its master should be checked at once).
func (s *Service) SetPeerSuspect(f func(master protocol.MasterID)) { s.suspect.Store(&f) }

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Service{cfg: cfg, store: cfg.Store, log: cfg.Logger}
}

// update runs a session transaction (store.Sessions.Update); once it has
// committed, the participants whose outbox it took past Limits.OutboxBytes
// are evicted.
func (s *Service) update(ctx context.Context, sid protocol.SessionID, fn func(tx *store.Tx) error) error {
	limit := s.cfg.Limits.OutboxBytes
	if limit <= 0 {
		return s.store.Update(ctx, sid, fn)
	}
	return s.store.Update(ctx, sid, func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		tx.AfterCommit(func(ctx context.Context) {
			for cid, n := range tx.OutboxBytes() {
				if n > limit {
					s.evictOverflowing(ctx, sid, cid, n)
				}
			}
		})
		return nil
	})
}

// Store returns the service's store.
func (s *Service) Store() *store.Store { return s.store }

// TokenURL returns the token string handed to clients:
// <public url>?sessionId=<sid>&token=<tok_...>&edition=<edition>, as
// OpenVidu Pro's (openvidu-browser's Session.processToken reads edition into
// isAtLeastPro and isEnterprise; only the tok_ id is the credential).
func (s *Service) TokenURL(sid protocol.SessionID, tokenID string) string {
	u := s.cfg.PublicURL + "?sessionId=" + url.QueryEscape(string(sid)) + "&token=" + tokenID
	if s.cfg.Edition != "" {
		u += "&edition=" + url.QueryEscape(s.cfg.Edition)
	}
	return u
}

// ParseToken extracts the tok_ id from a token as a client presents it: the
// full URL (whose sessionId must be sid) or the bare id.
func ParseToken(token string, sid protocol.SessionID) (string, bool) {
	if strings.HasPrefix(token, protocol.PrefixToken) {
		return token, true
	}
	u, err := url.Parse(token)
	if err != nil {
		return "", false
	}
	q := u.Query()
	if protocol.SessionID(q.Get("sessionId")) != sid || !strings.HasPrefix(q.Get("token"), protocol.PrefixToken) {
		return "", false
	}
	return q.Get("token"), true
}

// mediaClient returns a client for a media node by id.
func (s *Service) mediaClient(ctx context.Context, nodeID protocol.NodeID) (*mediaapi.Client, error) {
	if nodeID == "" {
		return nil, newError(NoMediaNode, "The session has no media node")
	}
	n, err := s.store.MediaNode(ctx, nodeID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && n.Crashed()) {
		return nil, newError(NoMediaNode, "Media node %s is not available", nodeID)
	}
	if err != nil {
		return nil, err
	}
	return mediaapi.NewClient(s.cfg.HTTPClient, n.URI, s.cfg.ClusterSecret), nil
}

// releaseEndpoints releases media node endpoints in the background of a
// finished operation; failures are logged (the node's own cleanup catches
// what is left).
func (s *Service) releaseEndpoints(ctx context.Context, sid protocol.SessionID, rel []endpointRef) {
	for _, r := range rel {
		if r.node == "" {
			continue
		}
		mc, err := s.mediaClient(ctx, r.node)
		if err != nil {
			s.log.Warn("release endpoint: no media node", "session", sid, "endpoint", r.id, "node", r.node, "err", err)
			continue
		}
		if err := mc.Release(ctx, string(sid), r.id); err != nil {
			s.log.Warn("release endpoint", "session", sid, "endpoint", r.id, "node", r.node, "err", err)
		}
	}
}

// endpointRef names an endpoint on a media node.
type endpointRef struct {
	node protocol.NodeID
	id   string // a publisher's stream id, or store.SubscriberEndpointID
}

// endpointsOf lists the endpoints a connection holds.
func endpointsOf(c *store.Connection) []endpointRef {
	var out []endpointRef
	if p := c.Publisher; p != nil {
		out = append(out, endpointRef{p.Node, string(p.StreamID)})
	}
	for _, sub := range c.Subscriptions {
		out = append(out, endpointRef{sub.Node, store.SubscriberEndpointID(c.ID, sub.StreamID)})
	}
	return out
}

// participants are the active connections but recorders' (OpenVidu's
// hidden RECORDER participant is never listed, announced or counted).
func participants(conns []*store.Connection) []*store.Connection {
	var out []*store.Connection
	for _, c := range conns {
		if c.Active() && !c.Recorder {
			out = append(out, c)
		}
	}
	return out
}

func activeConns(conns []*store.Connection) []*store.Connection {
	var out []*store.Connection
	for _, c := range conns {
		if c.Active() {
			out = append(out, c)
		}
	}
	return out
}

// background returns a context for cleanup that must finish even when the
// request that caused it was cancelled.
func background(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}
