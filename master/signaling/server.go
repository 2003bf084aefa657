// Package signaling serves openvidu-browser's JSON-RPC 2.0 over WebSocket at
// /openvidu (coder/websocket). A master holds nothing but its open sockets:
// each request is handed to the session service, and each participant's
// notifications are read from its outbox in Redis, whichever master queued
// them, and written to its socket in order.
package signaling

import (
	"context"
	"hash/fnv"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/clientip"
	"github.com/chorus-rtc/chorus/shared/credential"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Config configures a Server.
type Config struct {
	Sessions *session.Service
	Store    *store.Store
	// Incarnation is the master's current identity: outbox wake-ups are
	// addressed to it.
	Incarnation *session.Incarnation
	// Secret is the OpenVidu secret (joinRoom's "secret" joins without a token).
	Secret string
	// VideoSimulcast is joinRoom's videoSimulcast (OPENVIDU_WEBRTC_SIMULCAST):
	// openvidu-browser then publishes simulcast video unless the publisher
	// says otherwise.
	VideoSimulcast bool
	// TrustedProxies are the proxies in front of the Chorus proxy
	// (proxy.trusted_proxies): skipped from the end of X-Forwarded-For when
	// a participant's IP is reported.
	TrustedProxies clientip.Trusted
	// MaxMessageBytes is the largest frame accepted; a larger one closes the
	// socket with status 1009 (message too big).
	MaxMessageBytes int64
	// JoinTimeout is how long a socket may stay without a participant: one
	// that has not joined (joinRoom) or resumed (connect) by then is closed
	// with status 1008 (policy violation), unless one of those is being
	// handled. openvidu-browser sends joinRoom, or connect after a
	// reconnection, as soon as its socket opens. 0: 10 s.
	JoinTimeout time.Duration
	// MaxPingInterval is the largest heartbeat interval a client may
	// announce (ping's interval, in ms); larger ones are clamped to it,
	// smaller ones to a second. A socket silent for three intervals is
	// closed. 0: 30 s.
	MaxPingInterval time.Duration
	// RequestTimeout bounds the handling of one request.
	RequestTimeout time.Duration
	// HoldTimeout bounds the media renegotiations (reconnectStream,
	// prepareReceiveVideoFrom) that wait for a stream being moved to another
	// media node; they run beside the socket's other requests.
	HoldTimeout time.Duration
	// DepartureDelay holds a notification of the departure
	// (participantLeft, participantEvicted) of a connection that may be of
	// the recipient's own client (same IP and platform: store.Connection.
	// SameClient) for this long after it is first read from the outbox;
	// other participants are told at once. openvidu-browser forgets a
	// session as soon as it sends leaveRoom, so a client leaving with
	// several connections at once (camera and screen) would otherwise get,
	// on the second one, the first one's departure and report an unknown
	// connection; its own leaveRoom arrives within the delay (the first
	// disconnect() tears down media first: up to ~1 s on a loaded machine)
	// and stops the delivery. 0 delivers at once.
	DepartureDelay time.Duration
	// PollInterval is how often outboxes are read without a wake-up (pub/sub
	// wakes may be lost).
	PollInterval time.Duration
	// Limits bound what one socket can cost (zero values: none).
	Limits Limits
	// OnRequest, if set, is told of every JSON-RPC request handled but
	// pings: its method (MethodLabel: unknown names are "other"), whether
	// it failed, and how long it took. It must not block.
	OnRequest func(method string, failed bool, took time.Duration)
	// OnOutboxDelivered, if set, is told of each notification written to a
	// participant's WebSocket with the time since it was committed to the
	// participant's outbox. It must not block.
	OnOutboxDelivered func(lag time.Duration)
	Logger            *slog.Logger
}

// Limits bound what one participant's socket can cost the master. OpenVidu
// 2 has none of them. Zero turns a limit off.
type Limits struct {
	// SignalsPerSecond caps the socket's sendMessage requests, with a burst
	// of one second's worth; beyond it they fail with JSON-RPC error 999.
	SignalsPerSecond int
	// HeldRequests caps the socket's unanswered held requests
	// (reconnectStream, prepareReceiveVideoFrom: each runs beside the
	// others and may wait HoldTimeout); beyond it they fail at once with
	// JSON-RPC error 999.
	HeldRequests int
}

// Server accepts participants' WebSockets.
type Server struct {
	cfg    Config
	secret credential.Secret // cfg.Secret
	log    *slog.Logger

	mu      sync.Mutex
	closing bool
	all     map[*socket]struct{}
	joined  map[store.Wake]*socket // by session and connection
	wg      sync.WaitGroup
	// undetached are participants whose socket closed while Redis could
	// not record it (Detach failed): Run retries until it can, or until
	// the participant is back on a socket here. Without the retry the
	// participant stayed attached to this master for good, a ghost that
	// no grace period ever evicts.
	undetached map[store.Wake]struct{}

	// attach serializes, per session (striped), a resumption's Reattach
	// and register with a closed socket's unregister and Detach. Without
	// it a participant resuming on this master right after its socket
	// closed (a nudge closes sockets on purpose) could be detached by the
	// old socket after its Reattach: live on its new socket, yet evicted
	// after the grace period (session.TestNudgeClosesOnlySettledSockets).
	attach [64]sync.Mutex
}

// attachLock returns the lock of session sid's attachments (see attach).
func (s *Server) attachLock(sid protocol.SessionID) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sid))
	return &s.attach[h.Sum32()%uint32(len(s.attach))]
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.JoinTimeout == 0 {
		cfg.JoinTimeout = 10 * time.Second
	}
	if cfg.MaxPingInterval == 0 {
		cfg.MaxPingInterval = 30 * time.Second
	}
	if cfg.HoldTimeout == 0 {
		cfg.HoldTimeout = cfg.RequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, secret: credential.New(cfg.Secret), log: cfg.Logger, all: map[*socket]struct{}{}, joined: map[store.Wake]*socket{},
		undetached: map[store.Wake]struct{}{}}
}

// ServeHTTP upgrades a request to /openvidu and serves the socket until it
// closes. Any Origin is accepted, as openvidu-server does.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		http.Error(w, "master shutting down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.Debug("websocket upgrade failed", "err", err)
		return
	}
	conn.SetReadLimit(s.cfg.MaxMessageBytes)
	sk := newSocket(s, conn, clientIP(r, s.cfg.TrustedProxies), r.URL.Query().Get("sessionId"))
	s.mu.Lock()
	s.all[sk] = struct{}{}
	s.mu.Unlock()
	sk.serve(r.Context())
	s.mu.Lock()
	delete(s.all, sk)
	s.mu.Unlock()
}

// register makes sk the socket of participant (sid, cid) on this master,
// closing any older socket of the same participant (a reconnection that
// arrived before the old socket's death was noticed).
func (s *Server) register(sk *socket, sid protocol.SessionID, cid protocol.ConnectionID) {
	s.mu.Lock()
	old := s.joined[store.Wake{SessionID: sid, ConnectionID: cid}]
	s.joined[store.Wake{SessionID: sid, ConnectionID: cid}] = sk
	s.mu.Unlock()
	if old != nil && old != sk {
		old.replaced()
	}
}

// unregister forgets sk; it reports whether sk was still the participant's
// current socket (only then is the participant detached).
func (s *Server) unregister(sk *socket, sid protocol.SessionID, cid protocol.ConnectionID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.joined[store.Wake{SessionID: sid, ConnectionID: cid}] != sk {
		return false
	}
	delete(s.joined, store.Wake{SessionID: sid, ConnectionID: cid})
	return true
}

// Run dispatches outbox wake-ups to sockets until ctx ends, following the
// master's incarnation.
func (s *Server) Run(ctx context.Context) error {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for ctx.Err() == nil {
		changed := s.cfg.Incarnation.Changed()
		subCtx, cancel := context.WithCancel(ctx)
		wakes := s.cfg.Store.SubscribeWakes(subCtx, s.cfg.Incarnation.ID())
	dispatch:
		for {
			select {
			case <-changed:
				break dispatch
			case w, ok := <-wakes:
				if !ok {
					break dispatch
				}
				s.mu.Lock()
				sk := s.joined[store.Wake{SessionID: w.SessionID, ConnectionID: w.ConnectionID}]
				s.mu.Unlock()
				if sk != nil {
					sk.wake()
				}
			case <-retry.C:
				s.retryDetaches(ctx)
			}
		}
		cancel()
	}
	return nil
}

// detachLater queues a participant whose Detach failed for retryDetaches.
func (s *Server) detachLater(sid protocol.SessionID, cid protocol.ConnectionID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.undetached[store.Wake{SessionID: sid, ConnectionID: cid}] = struct{}{}
}

// retryDetaches detaches the queued participants that have no socket here
// again, under their session's attach lock (as a closing socket does).
func (s *Server) retryDetaches(ctx context.Context) {
	s.mu.Lock()
	pending := make([]store.Wake, 0, len(s.undetached))
	for w := range s.undetached {
		pending = append(pending, w)
	}
	s.mu.Unlock()
	for _, w := range pending {
		attach := s.attachLock(w.SessionID)
		attach.Lock()
		s.mu.Lock()
		back := s.joined[w] != nil
		if back {
			delete(s.undetached, w)
		}
		s.mu.Unlock()
		if !back {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := s.cfg.Sessions.Detach(dctx, w.SessionID, w.ConnectionID)
			cancel()
			if err == nil {
				s.mu.Lock()
				delete(s.undetached, w)
				s.mu.Unlock()
				s.log.Info("participant detached after a failed attempt", "session", w.SessionID, "connection", w.ConnectionID)
			}
		}
		attach.Unlock()
	}
}

// CloseAll closes every socket with "going away": openvidu-browser reconnects
// at once (through the proxy, to another master) and resumes its participant.
func (s *Server) CloseAll(reason string) {
	s.mu.Lock()
	sockets := make([]*socket, 0, len(s.all))
	for sk := range s.all {
		sockets = append(sockets, sk)
	}
	s.mu.Unlock()
	for _, sk := range sockets {
		sk.close(websocket.StatusGoingAway, reason)
	}
}

// Shutdown stops accepting sockets, closes the open ones and waits for their
// handlers to finish (participants are detached, not evicted: they resume on
// another master) or for ctx to end.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.CloseAll("master shutting down")
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// VerifySockets closes the sockets whose participant no longer exists in the
// cluster state (Redis lost it): their clients go through reconnection,
// learn that the session is gone (sessionStatus) and leave with nodeCrashed.
func (s *Server) VerifySockets(ctx context.Context) {
	s.mu.Lock()
	var conns []store.Wake
	sockets := map[store.Wake]*socket{}
	for w, sk := range s.joined {
		conns = append(conns, w)
		sockets[w] = sk
	}
	s.mu.Unlock()
	if len(conns) == 0 {
		return
	}
	exist, err := s.cfg.Store.ConnectionsExist(ctx, conns)
	if err != nil {
		s.log.Warn("verify sockets", "err", err)
		return
	}
	for w, ok := range exist {
		if sk := sockets[w]; !ok && !sk.isGone() {
			s.log.Warn("participant lost from the cluster state: closing its socket", "session", w.SessionID, "connection", w.ConnectionID)
			sk.close(websocket.StatusGoingAway, "session state lost")
		}
	}
}

// Count returns the number of open sockets.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all)
}

// clientIP is the participant's address (OpenVidu's connection "ip"):
// behind the Chorus proxy, the last X-Forwarded-For entry that is not a
// trusted proxy (the proxy appends its own peer, having kept the chain only
// from a trusted one); without X-Forwarded-For, the peer address. The peer
// itself (the proxy) is not judged: masters must be reachable only from
// the proxies (ARCHITECTURE.md's threat model).
func clientIP(r *http.Request, trusted clientip.Trusted) string {
	if chain := clientip.ForwardedFor(r); len(chain) > 0 {
		return trusted.Client(chain)
	}
	return clientip.Peer(r)
}
