package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/master/signaling"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// signalParams is sendMessage's params for a signal of the given data to
// the given connections (none: everybody).
func signalParams(data string, to ...string) map[string]string {
	msg := map[string]any{"to": to, "type": "signal:chat", "data": data}
	if len(to) == 0 {
		msg["to"] = []string{}
	}
	raw, _ := json.Marshal(msg)
	return map[string]string{"message": string(raw)}
}

// rpcErrorOf returns the JSON-RPC error a call failed with (nil if none).
func rpcErrorOf(err error) *protocol.RPCError {
	var rerr *protocol.RPCError
	if errors.As(err, &rerr) {
		return rerr
	}
	return nil
}

// TestSignalAndMetadataSizes: a 1 MiB signal is refused with openvidu-server's
// invalid-signal error (600) and reaches nobody, while a 64 KB one passes;
// joinRoom's metadata and a REST connection's data past the limit are
// refused too (500, and MetadataTooLarge: REST 400).
func TestSignalAndMetadataSizes(t *testing.T) {
	e := newEnv(t, 1)
	e.adopt(nodeID(1))
	svc, _ := e.socketMasterWith("master_limits", session.Nudges{}, 5*time.Second,
		session.Limits{SignalDataBytes: 64 << 10, MetadataBytes: 512 << 10}, signaling.Limits{})
	e.createSession(svc, "sizes")
	alice, bob := e.connect(svc, "sizes"), e.connect(svc, "sizes")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	err := alice.Call(ctx, "sendMessage", signalParams(strings.Repeat("x", 1<<20), bob.ConnectionID()), nil)
	if rerr := rpcErrorOf(err); rerr == nil || rerr.Code != protocol.CodeSignalFormatInvalid {
		t.Fatalf("a 1 MiB signal: %v, want JSON-RPC error %d", err, protocol.CodeSignalFormatInvalid)
	}
	data := strings.Repeat("y", 64_000)
	if err := alice.Call(ctx, "sendMessage", signalParams(data, bob.ConnectionID()), nil); err != nil {
		t.Fatalf("a 64 KB signal: %v", err)
	}
	err = bob.WaitFor(ctx, func(p *participant.Participant) bool {
		for _, ev := range p.Events() {
			if ev.Method == protocol.NotifySendMessage {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal("the 64 KB signal never reached bob")
	}
	var got []int
	for _, ev := range bob.Events() {
		if ev.Method == protocol.NotifySendMessage {
			var n protocol.SignalNotification
			_ = json.Unmarshal(ev.Params, &n)
			got = append(got, len(*n.Data))
		}
	}
	if len(got) != 1 || got[0] != len(data) {
		t.Errorf("bob got signals of %v bytes, want only the 64 KB one", got)
	}

	// joinRoom's metadata and a REST connection's data.
	_, err = participant.Join(ctx, participant.Config{Token: e.token(svc, "sizes").Token, LoopbackOnly: true,
		Metadata: strings.Repeat("m", 512<<10+1), NoResume: true, Logger: testLogger()})
	if rerr := rpcErrorOf(err); rerr == nil || rerr.Code != protocol.CodeUserMetadataFormatInvalid {
		t.Errorf("joinRoom with 512 KiB + 1 B of metadata: %v, want JSON-RPC error %d", err, protocol.CodeUserMetadataFormatInvalid)
	}
	_, _, err = svc.CreateConnection(ctx, "sizes", session.ConnectionProperties{Type: "WEBRTC", Role: protocol.RolePublisher, Data: strings.Repeat("d", 512<<10+1)}, "")
	if !session.IsKind(err, session.MetadataTooLarge) {
		t.Errorf("a REST connection with 512 KiB + 1 B of data: %v, want MetadataTooLarge", err)
	}
	if _, _, err := svc.CreateConnection(ctx, "sizes", session.ConnectionProperties{Type: "WEBRTC", Role: protocol.RolePublisher, Data: strings.Repeat("d", 512<<10)}, ""); err != nil {
		t.Errorf("a REST connection with 512 KiB of data: %v", err)
	}
}

// usedMemory is Redis's used_memory, in bytes.
func (e *env) usedMemory() int64 {
	e.t.Helper()
	info, err := e.st.Redis().Info(context.Background(), "memory").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				e.t.Fatal(err)
			}
			return n
		}
	}
	e.t.Fatal("no used_memory in INFO memory")
	return 0
}

// slowReader joins a session over a raw WebSocket and then never reads
// again: a participant whose client cannot keep up with what it is sent.
func (e *env) slowReader(svc *session.Service, sid protocol.SessionID) (protocol.ConnectionID, *websocket.Conn) {
	e.t.Helper()
	tok := e.token(svc, sid).Token
	u, err := url.Parse(tok)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+u.Host+"/openvidu?sessionId="+string(sid), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = ws.CloseNow() })
	join, _ := json.Marshal(protocol.Request{JSONRPC: "2.0", ID: json.RawMessage("1"), Method: "joinRoom",
		Params: json.RawMessage(fmt.Sprintf(`{"token":%q,"session":%q,"platform":"test","metadata":""}`, tok, sid))})
	if err := ws.Write(ctx, websocket.MessageText, join); err != nil {
		e.t.Fatal(err)
	}
	_, frame, err := ws.Read(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var resp struct {
		Result protocol.JoinRoomResult `json:"result"`
	}
	if err := json.Unmarshal(frame, &resp); err != nil || resp.Result.ID == "" {
		e.t.Fatalf("joinRoom: %s (%v)", frame, err)
	}
	return protocol.ConnectionID(resp.Result.ID), ws
}

// TestSignalFloodToASlowReader: a participant flooding another that reads
// slowly (here: not at all) with 64 KB signals fills that participant's
// outbox in Redis; past limits.outbox_bytes the reader is evicted
// (forceDisconnectByServer) and its queue dropped, so Redis's used_memory
// stays bounded however long the flood lasts.
func TestSignalFloodToASlowReader(t *testing.T) {
	const outboxLimit = 2 << 20
	e := newEnv(t, 1)
	e.adopt(nodeID(1))
	svc, _ := e.socketMasterWith("master_flood", session.Nudges{}, 5*time.Second,
		session.Limits{SignalDataBytes: 64 << 10, OutboxBytes: outboxLimit}, signaling.Limits{})
	e.createSession(svc, "flood")
	sender := e.connect(svc, "flood")
	reader, _ := e.slowReader(svc, "flood")
	// What the flood costs Redis, sampled while it lasts: used_memory less
	// the session's event stream (its signalSent events, which a master
	// delivers and deletes; none runs here).
	evKey := e.st.Prefix() + ":{flood}:ev"
	cost := func() int64 {
		ev, _ := e.st.Redis().MemoryUsage(context.Background(), evKey, 0).Result()
		return e.usedMemory() - ev
	}
	before := cost()
	var peak atomic.Int64
	peak.Store(before)
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			if c := cost(); c > peak.Load() {
				peak.Store(c)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	// 600 signals of 64 KB from 4 callers at once: 38 MB for the reader,
	// far more than its socket buffers hold.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	data := strings.Repeat("z", 64_000)
	start := time.Now()
	var refused atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				err := sender.Call(ctx, "sendMessage", signalParams(data, string(reader)), nil)
				if err == nil {
					continue
				}
				refused.Add(1) // the reader is gone: "to" names no connection any more
				if rerr := rpcErrorOf(err); rerr == nil || rerr.Code != protocol.CodeSignalToInvalid {
					t.Errorf("signal: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	flood := time.Since(start)
	stopSampling()
	<-sampled
	after := cost()
	t.Logf("flood of 600 x 64 KB took %s; Redis (less events) %d -> peak %d (%+d bytes) -> %d; %d signals refused once the reader was gone",
		flood, before, peak.Load(), peak.Load()-before, after, refused.Load())
	if c := e.conn("flood", reader); c != nil {
		t.Fatalf("the slow reader is still in the session after the flood (outbox %d entries)", len(e.outbox("flood", reader)))
	}
	if grown := peak.Load() - before; grown > 3*outboxLimit {
		t.Errorf("used_memory grew by up to %d bytes during the flood, want at most %d (3 x limits.outbox_bytes)", grown, 3*outboxLimit)
	}
	// The sender was told, as the others would be, with the server's reason.
	e.eventually(func() string {
		for _, ev := range sender.Events() {
			if ev.Method == protocol.NotifyParticipantEvicted {
				var p protocol.ConnectionReason
				_ = json.Unmarshal(ev.Params, &p)
				if p.ConnectionID == string(reader) && p.Reason == protocol.ReasonForceDisconnectByServer {
					return ""
				}
			}
		}
		return "the sender was not told of the reader's eviction (forceDisconnectByServer)"
	})
	// The reader's queue holds its own eviction at most.
	if n := e.outbox("flood", reader); len(n) > 1 {
		t.Errorf("the evicted reader's outbox holds %d entries", len(n))
	}
}

// TestHeldRequestsLimit: 10 000 prepareReceiveVideoFrom for a stream that
// is moving (each would wait up to the hold timeout in a goroutine of its
// own) are refused past limits.held_requests, and another participant
// joining the session meanwhile is not slowed down.
func TestHeldRequestsLimit(t *testing.T) {
	const (
		calls = 10_000
		limit = 64
	)
	e := newEnv(t, 1)
	e.adopt(nodeID(1))
	svc, _ := e.socketMasterWith("master_held", session.Nudges{}, 3*time.Second,
		session.Limits{}, signaling.Limits{HeldRequests: limit})
	e.createSession(svc, "held")
	publisher := e.join(svc, "held")
	stream := e.moving("held", publisher.ID)
	flooder := e.connect(svc, "held")

	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	var refused, queueFull, answered atomic.Int64
	var others sync.Map // error messages other than the refusal
	var wg sync.WaitGroup
	for i := 0; i < calls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := flooder.Call(ctx, "prepareReceiveVideoFrom", map[string]any{"sender": string(stream)}, nil)
			answered.Add(1)
			if rerr := rpcErrorOf(err); rerr != nil && strings.Contains(rerr.Message, "Too many pending prepareReceiveVideoFrom") {
				refused.Add(1)
				return
			}
			if rerr := rpcErrorOf(err); rerr != nil && strings.Contains(rerr.Message, "Too many requests in flight") {
				queueFull.Add(1) // the socket's request queue (256) overflowed first
				return
			}
			others.Store(fmt.Sprint(err), true)
		}()
	}
	// Another participant joins while the flood is held and refused.
	time.Sleep(200 * time.Millisecond)
	var latencies []time.Duration
	for i := 0; i < 3; i++ {
		start := time.Now()
		p, err := participant.Join(ctx, participant.Config{Token: e.token(svc, "held").Token, LoopbackOnly: true, NoResume: true, Logger: testLogger()})
		if err != nil {
			t.Fatalf("join during the flood: %v", err)
		}
		latencies = append(latencies, time.Since(start))
		p.Close()
	}
	wg.Wait()
	t.Logf("%d of %d refused past the held limit, %d past the request queue, %d answered otherwise; joins during the flood took %v",
		refused.Load(), calls, queueFull.Load(), calls-refused.Load()-queueFull.Load(), latencies)
	others.Range(func(k, _ any) bool { t.Logf("other answer: %v", k); return true })
	if answered.Load() != calls {
		t.Fatalf("%d of %d calls answered", answered.Load(), calls)
	}
	// Every call beyond the limit is refused, except those that found a
	// place freed by an earlier one answered meanwhile (superseded: the same
	// subscription requested again).
	if refused.Load() < calls/10 || refused.Load()+queueFull.Load() < calls/2 {
		t.Errorf("%d of %d held calls refused past the limit of %d (%d more past the request queue), want most of them",
			refused.Load(), calls, limit, queueFull.Load())
	}
	for _, l := range latencies {
		if l > 3*time.Second {
			t.Errorf("a join took %s during the flood, want under 3 s", l)
		}
	}
}

// TestParticipantsAndSignalRate: with limits.participants_per_session 2, a
// third participant's joinRoom is refused (401) until one leaves; with
// limits.signals_per_second 10, a connection sending 50 signals at once gets
// the first 10 (the burst) through and the rest refused (999), and after a
// second of quiet it may signal again.
func TestParticipantsAndSignalRate(t *testing.T) {
	e := newEnv(t, 1)
	e.adopt(nodeID(1))
	svc, _ := e.socketMasterWith("master_caps", session.Nudges{}, 5*time.Second,
		session.Limits{ParticipantsPerSession: 2}, signaling.Limits{SignalsPerSecond: 10})
	e.createSession(svc, "caps")
	alice, bob := e.connect(svc, "caps"), e.connect(svc, "caps")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	tok := e.token(svc, "caps").Token
	_, err := participant.Join(ctx, participant.Config{Token: tok, LoopbackOnly: true, NoResume: true, Logger: testLogger()})
	if rerr := rpcErrorOf(err); rerr == nil || rerr.Code != protocol.CodeUserUnauthorized {
		t.Fatalf("a third participant: %v, want JSON-RPC error %d", err, protocol.CodeUserUnauthorized)
	}
	if err := bob.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitFor(ctx, func(p *participant.Participant) bool {
		for _, ev := range p.Events() {
			if ev.Method == protocol.NotifyParticipantLeft {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal("bob's departure never reached alice")
	}
	carol, err := participant.Join(ctx, participant.Config{Token: e.token(svc, "caps").Token, LoopbackOnly: true, NoResume: true, Logger: testLogger()})
	if err != nil {
		t.Fatalf("a participant once bob left: %v", err)
	}
	defer carol.Close()

	var passed, limited int
	for range 50 {
		err := alice.Call(ctx, "sendMessage", signalParams("hi", carol.ConnectionID()), nil)
		switch rerr := rpcErrorOf(err); {
		case err == nil:
			passed++
		case rerr != nil && rerr.Code == protocol.CodeGeneric && strings.Contains(rerr.Message, "Too many signals"):
			limited++
		default:
			t.Fatalf("signal: %v", err)
		}
	}
	// 50 calls one after the other take well under a second here; the
	// limiter refills 10 a second, so a slow machine may pass a few more.
	if passed < 10 || passed > 20 || limited != 50-passed {
		t.Errorf("%d signals passed and %d were refused, want 10 (the burst, a few more on a slow machine) and the rest", passed, limited)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := alice.Call(ctx, "sendMessage", signalParams("again", carol.ConnectionID()), nil); err != nil {
		t.Errorf("a signal after a second of quiet: %v", err)
	}
}
