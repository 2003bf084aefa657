package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

const (
	// requestQueue bounds the requests of one socket waiting to be handled.
	requestQueue = 256
	// writeTimeout bounds one frame write; a client that does not read is dropped.
	writeTimeout = 5 * time.Second
	// evictedCloseDelay: an evicted participant's client closes its socket
	// itself; the server closes it after this delay otherwise (as openvidu-server).
	evictedCloseDelay = 10 * time.Second
	// defaultPingInterval is assumed until the client's first ping says
	// otherwise; a socket silent for three intervals is closed. The
	// interval a client announces is clamped to [minPingInterval,
	// Config.MaxPingInterval]: a client cannot keep a silent socket (and
	// its participant) for longer than three times the maximum.
	// openvidu-browser announces 5000 ms (OpenVidu.startWs: heartbeat).
	defaultPingInterval = 20 * time.Second
	minPingInterval     = time.Second
	outboxBatch         = 100
	// A nudge leaves a socket alone for nudgeSettleOpen after it opened (its
	// client re-establishes its broken streams one after the other) and for
	// nudgeSettleRequest after it carried a request.
	nudgeSettleOpen    = 500 * time.Millisecond
	nudgeSettleRequest = 400 * time.Millisecond
	// nudgeSettleOffer bounds how long a forciblyReconnectSubscriber offer
	// written on the socket keeps nudges off it while its answer is
	// pending (the server's own claim on that subscription lasts as long:
	// session's forcedAnswerWindow).
	nudgeSettleOffer = 3 * time.Second
)

// socket is one participant's WebSocket. The reader goroutine answers pings
// itself and queues other requests for the worker, which handles them one at
// a time, in order. Once joined, a delivery goroutine writes the
// participant's notifications.
type socket struct {
	srv    *Server
	conn   *websocket.Conn
	ip     string
	urlSID string // ?sessionId= of the WebSocket URL

	ctx    context.Context
	cancel context.CancelFunc

	// openedAt and lastRequest (Unix ns of the last request other than a
	// ping) tell whether the client may be in the middle of something; a
	// nudge then waits (see reconnect).
	openedAt    time.Time
	lastRequest atomic.Int64

	requests chan *protocol.Request
	wakeCh   chan struct{}

	mu       sync.Mutex
	sid      protocol.SessionID
	cid      protocol.ConnectionID
	rpcID    string
	joined   bool
	gone     bool // left, evicted or replaced: do not detach on close
	lastPing time.Time
	interval time.Duration
	// statusOf is the session this unjoined socket may ask sessionStatus
	// about: the one its failed connect proved it was a participant of.
	statusOf protocol.SessionID

	// authenticating counts the joinRoom and connect requests being
	// handled: the join deadline waits for them.
	authenticating atomic.Int32

	// held counts the held requests still unanswered on this socket: a
	// nudge must not close it then, since openvidu-browser cancels every
	// pending request when its WebSocket breaks (RpcBuilder.cancel, from
	// stopPing on reconnecting) and never retries a stream's reconnection
	// whose request it dropped.
	held atomic.Int32

	// forcedOffers counts the forciblyReconnectSubscriber offers written on
	// this socket and not yet answered (reconnectStream with
	// forciblyReconnect), the last written at forcedOfferAt (Unix ns): a
	// nudge then waits too, since openvidu-browser loses an answer it
	// sends while its socket reconnects, and the subscription would wait
	// for its own 4 s ICE timer.
	forcedOffers  atomic.Int32
	forcedOfferAt atomic.Int64

	// signals paces sendMessage (Limits.SignalsPerSecond; nil: no limit).
	signals *rate.Limiter

	// deliverMu orders notifications against leaveRoom: once leaving is
	// set, no notification is written (OpenVidu sends nothing to a
	// participant after answering its leaveRoom; openvidu-browser, which
	// has forgotten the session by then, reports any as an error).
	deliverMu sync.Mutex
	leaving   bool

	// departure is the outbox entry announcing another participant's
	// departure that delivery waits on, and when it was first read
	// (delivery goroutine only). See Config.DepartureDelay.
	departure     string
	departureSeen time.Time

	tasks sync.WaitGroup
}

func newSocket(srv *Server, conn *websocket.Conn, ip, urlSID string) *socket {
	sk := &socket{
		srv: srv, conn: conn, ip: ip, urlSID: urlSID,
		requests: make(chan *protocol.Request, requestQueue),
		wakeCh:   make(chan struct{}, 1),
		lastPing: time.Now(), interval: min(defaultPingInterval, srv.cfg.MaxPingInterval), openedAt: time.Now(),
	}
	if n := srv.cfg.Limits.SignalsPerSecond; n > 0 {
		sk.signals = rate.NewLimiter(rate.Limit(n), n)
	}
	return sk
}

// serve runs the socket until it closes, then detaches the participant (it
// may reconnect, here or on another master, within the grace period).
func (sk *socket) serve(parent context.Context) {
	sk.ctx, sk.cancel = context.WithCancel(context.WithoutCancel(parent))
	defer sk.cancel()
	sk.tasks.Add(2)
	go func() { defer sk.tasks.Done(); sk.work() }()
	go func() { defer sk.tasks.Done(); sk.watchdog() }()
	sk.read()
	sk.cancel()
	close(sk.requests)
	sk.tasks.Wait()
	_ = sk.conn.CloseNow()

	sk.mu.Lock()
	sid, cid, joined, gone := sk.sid, sk.cid, sk.joined, sk.gone
	sk.mu.Unlock()
	if !joined {
		return
	}
	attach := sk.srv.attachLock(sid)
	attach.Lock()
	defer attach.Unlock()
	if sk.srv.unregister(sk, sid, cid) && !gone {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sk.srv.cfg.Sessions.Detach(ctx, sid, cid); err != nil {
			sk.srv.log.Warn("detach participant: retried every second", "session", sid, "connection", cid, "err", err)
			sk.srv.detachLater(sid, cid)
		}
	}
}

func (sk *socket) read() {
	for {
		typ, frame, err := sk.conn.Read(sk.ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig {
				sk.srv.log.Info("closed a socket that sent an oversized message", "ip", sk.ip)
			}
			return
		}
		if typ != websocket.MessageText {
			sk.reply(nil, nil, &protocol.RPCError{Code: protocol.CodeInvalidRequest, Message: "Invalid request: binary frames are not JSON-RPC"})
			continue
		}
		req, rerr := protocol.DecodeRequest(frame)
		if rerr != nil {
			var id json.RawMessage
			if req != nil {
				id = req.ID
			}
			sk.reply(id, nil, rerr)
			continue
		}
		if req.Method == "ping" {
			sk.ping(req)
			continue
		}
		sk.lastRequest.Store(time.Now().UnixNano())
		if req.Method == "leaveRoom" {
			// openvidu-browser forgets the session when it sends leaveRoom:
			// from now on a notification would reach nobody (its handlers
			// log errors for the connections they no longer know).
			sk.stopNotifications()
		}
		select {
		case sk.requests <- req:
		default:
			sk.reply(req.ID, nil, &protocol.RPCError{Code: protocol.CodeGeneric, Message: "Too many requests in flight on this connection"})
		}
	}
}

// ping answers the heartbeat at once, whatever the worker is doing.
func (sk *socket) ping(req *protocol.Request) {
	var p struct {
		Interval float64 `json:"interval"`
	}
	_ = json.Unmarshal(req.Params, &p)
	sk.mu.Lock()
	sk.lastPing = time.Now()
	if p.Interval > 0 {
		sk.interval = clampPingInterval(p.Interval, sk.srv.cfg.MaxPingInterval)
	}
	sk.mu.Unlock()
	sk.reply(req.ID, map[string]any{"value": "pong"}, nil)
}

// clampPingInterval converts a ping's interval (ms) to the watchdog's
// interval, within [minPingInterval, maxInterval].
func clampPingInterval(ms float64, maxInterval time.Duration) time.Duration {
	switch {
	case ms >= float64(maxInterval/time.Millisecond):
		return maxInterval
	case ms <= float64(minPingInterval/time.Millisecond):
		return minPingInterval
	}
	return time.Duration(ms * float64(time.Millisecond))
}

// watchdog closes a socket whose client stopped pinging for three intervals
// (its network is gone even if TCP has not noticed), and one that carries
// no participant Config.JoinTimeout after it opened.
func (sk *socket) watchdog() {
	t := time.NewTicker(watchdogTick(sk.srv.cfg.JoinTimeout))
	defer t.Stop()
	for {
		select {
		case <-sk.ctx.Done():
			return
		case <-t.C:
			sk.mu.Lock()
			silent := time.Since(sk.lastPing) > 3*sk.interval
			unjoined := !sk.joined && time.Since(sk.openedAt) > sk.srv.cfg.JoinTimeout
			sk.mu.Unlock()
			if unjoined && sk.authenticating.Load() == 0 {
				sk.srv.log.Debug("closing a socket that never joined", "ip", sk.ip, "after", sk.srv.cfg.JoinTimeout)
				sk.close(websocket.StatusPolicyViolation, "No participant joined within "+sk.srv.cfg.JoinTimeout.String())
				return
			}
			if silent {
				sk.close(websocket.StatusNormalClosure, "Close for not receive ping from client")
				return
			}
		}
	}
}

// watchdogTick is the watchdog's period: a second, or less for a shorter
// join deadline (tests), so that the deadline is kept within 10%.
func watchdogTick(joinTimeout time.Duration) time.Duration {
	return min(time.Second, max(joinTimeout/10, 10*time.Millisecond))
}

// work handles the socket's requests one at a time, in order, except the
// media renegotiations that may have to wait for a stream moving to another
// media node (held): those run beside the others, so that a held one
// delays neither the client's echo nor its other streams' reconnections.
func (sk *socket) work() {
	for req := range sk.requests {
		if held(req.Method) {
			if limit := sk.srv.cfg.Limits.HeldRequests; limit > 0 && int(sk.held.Load()) >= limit {
				sk.reply(req.ID, nil, &protocol.RPCError{Code: protocol.CodeGeneric,
					Message: fmt.Sprintf("Too many pending %s requests on this connection: at most %d may wait at once", req.Method, limit)})
				continue
			}
			sk.srv.wg.Add(1)
			sk.held.Add(1)
			go func() {
				defer sk.srv.wg.Done()
				sk.runHeld(req)
			}()
			continue
		}
		sk.run(req, sk.srv.cfg.RequestTimeout)
	}
}

// runHeld handles a request that may wait for a moving stream. It outlives
// its socket (nudges wait for it, see socket.held, but a master or network
// failure may not): an answer that finds the socket closed goes to the
// participant's outbox and reaches the client on its next socket, where
// clients that keep requests across reconnections (the Go SDK) take it.
func (sk *socket) runHeld(req *protocol.Request) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(sk.ctx), sk.srv.cfg.HoldTimeout)
	defer cancel()
	start := time.Now()
	result, err := sk.handle(ctx, req)
	var rerr *protocol.RPCError
	if err != nil {
		rerr = toRPCError(err)
	}
	sk.mu.Lock()
	sid, cid := sk.sid, sk.cid
	sk.mu.Unlock()
	sk.srv.log.Debug("request", "method", req.Method, "connection", cid, "took", time.Since(start).Round(time.Millisecond), "err", err)
	sk.srv.observe(req.Method, err, time.Since(start))
	resp := sk.response(req.ID, result, rerr)
	written := sk.ctx.Err() == nil && sk.write(resp)
	sk.held.Add(-1)
	if written {
		return
	}
	frame, merr := json.Marshal(resp)
	if merr != nil || cid == "" {
		return
	}
	sk.srv.cfg.Sessions.QueueResponse(ctx, sid, cid, frame)
}

// held reports whether a request may wait for a moving stream.
func held(method string) bool {
	return method == "reconnectStream" || method == "prepareReceiveVideoFrom"
}

func (sk *socket) run(req *protocol.Request, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(sk.ctx, timeout)
	start := time.Now()
	result, err := sk.handle(ctx, req)
	cancel()
	sk.srv.observe(req.Method, err, time.Since(start))
	if sk.srv.log.Enabled(sk.ctx, slog.LevelDebug) {
		sk.mu.Lock()
		cid := sk.cid
		sk.mu.Unlock()
		sk.srv.log.Debug("request", "method", req.Method, "connection", cid, "took", time.Since(start).Round(time.Millisecond), "err", err)
	}
	if errors.Is(err, errTryAgainLater) {
		sk.close(websocket.StatusTryAgainLater, "cluster state unavailable")
		return
	}
	var rerr *protocol.RPCError
	if err != nil {
		rerr = toRPCError(err)
		if rerr.Code == protocol.CodeGeneric {
			sk.srv.log.Warn("request failed", "method", req.Method, "err", err)
		}
	}
	sk.reply(req.ID, result, rerr)
	if after, ok := result.(afterReply); ok {
		after.run()
	}
}

// afterReply is a result whose follow-up must wait until the reply is
// written (a participant's notifications come after its joinRoom answer).
type afterReply struct {
	value any
	run   func()
}

func (a afterReply) MarshalJSON() ([]byte, error) { return json.Marshal(a.value) }

// reply writes a response.
func (sk *socket) reply(id json.RawMessage, result any, rerr *protocol.RPCError) {
	sk.write(sk.response(id, result, rerr))
}

// response builds a response, adding the JSON-RPC session id to object
// results as openvidu-server's JSON-RPC layer does.
func (sk *socket) response(id json.RawMessage, result any, rerr *protocol.RPCError) protocol.Response {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	resp := protocol.Response{ID: id, JSONRPC: "2.0"}
	if rerr != nil {
		resp.Error = rerr
	} else {
		if result == nil {
			result = map[string]any{}
		}
		if m, ok := result.(map[string]any); ok {
			sk.mu.Lock()
			if sk.rpcID != "" {
				if _, has := m["value"]; !has || len(m) > 1 {
					m["sessionId"] = sk.rpcID
				}
			}
			sk.mu.Unlock()
		}
		resp.Result = result
	}
	return resp
}

// write sends a frame; it reports whether it was written (a failed write
// ends the socket).
func (sk *socket) write(v any) bool {
	frame, err := json.Marshal(v)
	if err != nil {
		sk.srv.log.Error("encode frame", "err", err)
		return false
	}
	return sk.writeFrame(frame)
}

func (sk *socket) writeFrame(frame []byte) bool {
	ctx, cancel := context.WithTimeout(sk.ctx, writeTimeout)
	defer cancel()
	if err := sk.conn.Write(ctx, websocket.MessageText, frame); err != nil {
		sk.cancel()
		return false
	}
	return true
}

func (sk *socket) isGone() bool {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return sk.gone
}

func (sk *socket) wake() {
	select {
	case sk.wakeCh <- struct{}{}:
	default:
	}
}

// replaced is called when the participant's newer socket registered on this
// master: this one must stop delivering and must not detach.
func (sk *socket) replaced() {
	sk.mu.Lock()
	sk.gone = true
	sk.mu.Unlock()
	sk.close(websocket.StatusGoingAway, "replaced by a newer connection")
}

func (sk *socket) close(code websocket.StatusCode, reason string) {
	go func() { _ = sk.conn.Close(code, reason) }()
}

// startDelivery writes the participant's queued notifications from now on.
func (sk *socket) startDelivery(sid protocol.SessionID, cid protocol.ConnectionID) {
	sk.tasks.Add(1)
	go func() {
		defer sk.tasks.Done()
		sk.deliver(sid, cid)
	}()
}

func (sk *socket) deliver(sid protocol.SessionID, cid protocol.ConnectionID) {
	st := sk.srv.cfg.Store
	tick := time.NewTicker(sk.srv.cfg.PollInterval)
	defer tick.Stop()
	for {
		entries, err := st.ReadOutbox(sk.ctx, sid, cid, outboxBatch)
		if err != nil && sk.ctx.Err() == nil {
			sk.srv.log.Warn("read outbox", "session", sid, "connection", cid, "err", err)
		}
		evicted := false
		var reconnect json.RawMessage
		delivered := entries
	write:
		for i, e := range entries {
			switch e.Method {
			case protocol.InternalReconnectSocket:
				// Acknowledged before it is acted on, and nothing after it
				// is written here: the resumed socket gets the rest.
				reconnect, delivered = e.Params, entries[:i+1]
				break write
			case protocol.InternalResponse:
				sk.writeFrame(e.Params)
			default:
				if sk.holdDeparture(e, cid) {
					delivered = entries[:i] // the rest waits, in order
					break write
				}
				if !sk.notify(e) {
					delivered = entries[:i] // leaving: the rest stays queued
					break write
				}
				if e.Method == protocol.NotifyParticipantEvicted && sk.isOwnEviction(cid, e.Params) {
					evicted = true
				}
			}
		}
		if evicted {
			// The participant no longer exists: its outbox goes with it.
			if err := st.DeleteOutbox(sk.ctx, sid, cid); err != nil {
				sk.srv.log.Warn("delete outbox", "session", sid, "connection", cid, "err", err)
			}
			return
		}
		if len(delivered) > 0 && sk.ctx.Err() == nil {
			if err := st.AckOutbox(sk.ctx, sid, cid, delivered); err != nil {
				sk.srv.log.Warn("ack outbox", "session", sid, "connection", cid, "err", err)
			}
			if reconnect != nil {
				if sk.reconnect(sid, cid, reconnect) {
					return // nothing more goes to a closing socket
				}
				continue
			}
			if len(entries) == outboxBatch {
				continue
			}
		}
		select {
		case <-sk.ctx.Done():
			return
		case <-sk.wakeCh:
		case <-tick.C:
		}
	}
}

// holdDeparture reports whether e, a notification of the departure of a
// connection that may be of this participant's own client (e.Hold), must
// wait (Config.DepartureDelay); a wake-up is scheduled for when it is due.
func (sk *socket) holdDeparture(e store.OutboxEntry, cid protocol.ConnectionID) bool {
	delay := sk.srv.cfg.DepartureDelay
	if delay <= 0 || !e.Hold || (e.Method != protocol.NotifyParticipantLeft && e.Method != protocol.NotifyParticipantEvicted) {
		return false
	}
	var p protocol.ConnectionReason
	if json.Unmarshal(e.Params, &p) == nil && protocol.ConnectionID(p.ConnectionID) == cid {
		return false // its own eviction: at once
	}
	if sk.departure != e.ID {
		sk.departure, sk.departureSeen = e.ID, time.Now()
	}
	wait := delay - time.Since(sk.departureSeen)
	if wait <= 0 {
		return false
	}
	time.AfterFunc(wait, sk.wake)
	return true
}

// notify writes a queued notification unless the participant is leaving;
// it reports whether it did.
func (sk *socket) notify(e store.OutboxEntry) bool {
	sk.deliverMu.Lock()
	defer sk.deliverMu.Unlock()
	if sk.leaving {
		return false
	}
	if e.Method == protocol.NotifyForciblyReconnect {
		sk.forcedOfferAt.Store(time.Now().UnixNano())
		sk.forcedOffers.Add(1)
	}
	sk.write(protocol.Notification{Method: e.Method, Params: e.Params, JSONRPC: "2.0"})
	if observe := sk.srv.cfg.OnOutboxDelivered; observe != nil {
		if at, ok := store.EntryTime(e.ID); ok {
			observe(time.Since(at))
		}
	}
	return true
}

// forcedOfferAnswered records the answer to one of the socket's
// forciblyReconnectSubscriber offers.
func (sk *socket) forcedOfferAnswered() {
	for {
		n := sk.forcedOffers.Load()
		if n <= 0 || sk.forcedOffers.CompareAndSwap(n, n-1) {
			return
		}
	}
}

// awaitsForcedAnswer reports whether an offer written on the socket within
// nudgeSettleOffer is still unanswered.
func (sk *socket) awaitsForcedAnswer() bool {
	return sk.forcedOffers.Load() > 0 && time.Since(time.Unix(0, sk.forcedOfferAt.Load())) < nudgeSettleOffer
}

// stopNotifications makes the delivery write nothing more, once the
// notification it may be writing is out.
func (sk *socket) stopNotifications() {
	sk.deliverMu.Lock()
	sk.leaving = true
	sk.deliverMu.Unlock()
}

// resumeNotifications undoes stopNotifications after a leaveRoom that did
// not happen.
func (sk *socket) resumeNotifications() {
	sk.deliverMu.Lock()
	sk.leaving = false
	sk.deliverMu.Unlock()
	sk.wake()
}

// reconnect closes the socket so that its client reconnects and resumes
// (the entry is acknowledged first: the resumed socket is not closed again).
// It reports whether it closed the socket.
func (sk *socket) reconnect(sid protocol.SessionID, cid protocol.ConnectionID, params json.RawMessage) bool {
	var p protocol.ReconnectSocket
	_ = json.Unmarshal(params, &p)
	if p.IfMigrating && !sk.srv.cfg.Sessions.PublisherMigrating(sk.ctx, sid, cid) {
		return false
	}
	if sk.held.Load() > 0 {
		// The client would drop its pending renegotiation: the next nudge,
		// after the answer, closes the socket instead.
		sk.srv.log.Debug("nudge skipped: a renegotiation is pending", "session", sid, "connection", cid)
		return false
	}
	if sk.awaitsForcedAnswer() {
		// The client is answering the server's offer: the answer, sent
		// while its socket reconnects, would be lost.
		sk.srv.log.Debug("nudge skipped: a forced offer awaits its answer", "session", sid, "connection", cid)
		return false
	}
	if young, busy := time.Since(sk.openedAt) < nudgeSettleOpen, time.Since(time.Unix(0, sk.lastRequest.Load())) < nudgeSettleRequest; young || busy {
		// A socket just resumed is re-establishing its broken streams, and
		// a client that just sent a request may be sending more:
		// openvidu-browser loses a request sent while its socket
		// reconnects (WebSocket.send throws in CONNECTING), and a stream
		// whose reconnection request was lost waits for its answer forever.
		sk.srv.log.Debug("nudge skipped: the client is busy", "session", sid, "connection", cid, "young", young, "busy", busy)
		return false
	}
	sk.close(websocket.StatusGoingAway, "media moved to another node: reconnect")
	return true
}

// isOwnEviction reports whether a participantEvicted is about this socket's
// own participant; if so, its client leaves and closes the socket, and if it
// does not, the server does.
func (sk *socket) isOwnEviction(cid protocol.ConnectionID, params json.RawMessage) bool {
	var p protocol.ConnectionReason
	if json.Unmarshal(params, &p) != nil || protocol.ConnectionID(p.ConnectionID) != cid {
		return false
	}
	sk.mu.Lock()
	sk.gone = true
	sk.mu.Unlock()
	time.AfterFunc(evictedCloseDelay, func() { sk.close(websocket.StatusNormalClosure, "evicted") })
	return true
}
