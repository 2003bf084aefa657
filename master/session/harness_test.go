package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http's and pion's sockets close asynchronously.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// waitTimeout bounds every wait for a condition: generous, since the
// machine is shared; a passing test never waits for it.
const waitTimeout = 15 * time.Second

// grace is the reconnection grace period of the test masters.
const grace = 400 * time.Millisecond

// env is the cluster a test runs on, without masters: a throwaway
// redis-server and n in-process media nodes (media_1, ...; clustertest),
// serving their internal API and heartbeating. The test plays the
// controller: it adopts nodes (adopt) and declares them crashed or draining.
type env struct {
	t     *testing.T
	cl    *clustertest.Cluster
	st    *store.Store
	http  *http.Client
	nodes map[protocol.NodeID]string // media node id -> internal API URL
}

// newEnv starts a Redis and n media nodes, adopting none of them.
func newEnv(t *testing.T, n int) *env {
	t.Helper()
	cl := clustertest.Start(t, clustertest.Options{MediaNodes: n})
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	e := &env{t: t, cl: cl, st: cl.Store, http: &http.Client{Timeout: 5 * time.Second, Transport: tr}, nodes: map[protocol.NodeID]string{}}
	for i, u := range cl.MediaNodeURLs {
		e.nodes[nodeID(i+1)] = u
	}
	return e
}

// in returns the env as seen by subtest t: its helpers fail t.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// nodeID is the id clustertest gives its i-th media node (from 1).
func nodeID(i int) protocol.NodeID { return protocol.NodeID("media_" + string(rune('0'+i))) }

func testLogger() *slog.Logger {
	w := io.Discard
	if os.Getenv("CHORUS_TEST_LOGS") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// service returns the session service a master with incarnation id runs
// on the env: its media node client, a short grace period, no nudges
// (configure changes the configuration).
func (e *env) service(id protocol.MasterID, configure ...func(*session.Config)) *session.Service {
	cfg := session.Config{
		Store: e.st, HTTPClient: e.http, ClusterSecret: clustertest.ClusterSecret, PublicURL: "ws://127.0.0.1:1",
		Incarnation: session.NewIncarnation(id), ClusterID: "test", ReconnectGrace: grace, Logger: testLogger(),
	}
	for _, f := range configure {
		f(&cfg)
	}
	return session.New(cfg)
}

// adopt records media nodes as running, as the controller does when it
// adopts them, and waits until they accept sessions (heartbeat included).
func (e *env) adopt(ids ...protocol.NodeID) {
	e.t.Helper()
	now := store.NowMillis()
	e.nodesTx(func(tx *store.NodesTx) {
		for _, id := range ids {
			tx.Create(store.MediaNodeInfo{ID: id, URI: e.nodes[id], Status: protocol.NodeRunning, Provider: "static",
				LaunchingTime: now, ConnectedAt: now})
		}
	})
	e.waitFor(fmt.Sprintf("nodes %v accepting sessions", ids), func() bool {
		for _, id := range ids {
			n, err := e.st.MediaNode(context.Background(), id)
			if err != nil || !n.AcceptsSessions(time.Now()) {
				return false
			}
		}
		return true
	})
}

// crash stops a media node process (if it runs in the env) and declares it
// crashed, as the controller does once it stayed silent.
func (e *env) crash(id protocol.NodeID) {
	e.t.Helper()
	e.cl.Stop(string(id))
	now := store.NowMillis()
	e.nodesTx(func(tx *store.NodesTx) {
		tx.Nodes[id].CrashedAt, tx.Nodes[id].DisconnectedAt = now, now
	})
}

// drain puts a node in waiting-idle-to-terminate with the migrate strategy,
// as DELETE /media-nodes/{id}?deletion-strategy=migrate does.
func (e *env) drain(id protocol.NodeID) {
	e.t.Helper()
	e.nodesTx(func(tx *store.NodesTx) {
		tx.Nodes[id].Status, tx.Nodes[id].Drain = protocol.NodeWaitingIdle, "migrate"
	})
}

// moveOff takes node from away from session sid as the controller does: it
// crashes (alive false) or is drained (alive true), then svc migrates the
// session off it.
func (e *env) moveOff(svc *session.Service, sid protocol.SessionID, from protocol.NodeID, alive bool) {
	e.t.Helper()
	if alive {
		e.drain(from)
	} else {
		e.crash(from)
	}
	if err := svc.MigrateSession(context.Background(), sid, from, alive); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) nodesTx(fn func(tx *store.NodesTx)) {
	e.t.Helper()
	err := e.st.UpdateMediaNodes(context.Background(), "", func(tx *store.NodesTx) error { fn(tx); return nil })
	if err != nil {
		e.t.Fatal(err)
	}
}

// endpoints lists the endpoints a running media node holds for a session.
func (e *env) endpoints(node protocol.NodeID, sid protocol.SessionID) []string {
	e.t.Helper()
	list, err := mediaapi.NewClient(e.http, e.nodes[node], clustertest.ClusterSecret).Endpoints(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ep := range list.Endpoints {
		if ep.SessionID == string(sid) {
			out = append(out, ep.ID)
		}
	}
	slices.Sort(out)
	return out
}

// nodeSessions lists the sessions pinned to a node.
func (e *env) nodeSessions(node protocol.NodeID) []protocol.SessionID {
	e.t.Helper()
	ids, err := e.st.NodeSessions(context.Background(), node)
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// createSession creates a session with a custom id.
func (e *env) createSession(svc *session.Service, sid protocol.SessionID) {
	e.t.Helper()
	if _, err := svc.CreateSession(context.Background(), store.SessionProperties{CustomSessionID: string(sid), MediaMode: "ROUTED", RecordingMode: "MANUAL"}, ""); err != nil {
		e.t.Fatal(err)
	}
}

// token adds a pending PUBLISHER connection to a session.
func (e *env) token(svc *session.Service, sid protocol.SessionID) *store.Connection {
	e.t.Helper()
	_, c, err := svc.CreateConnection(context.Background(), sid, session.ConnectionProperties{Type: "WEBRTC", Role: protocol.RolePublisher}, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// join adds a participant to a session through svc (its master holds the
// participant's WebSocket).
func (e *env) join(svc *session.Service, sid protocol.SessionID) *store.Connection {
	e.t.Helper()
	res, err := svc.Join(context.Background(), session.JoinRequest{SessionID: sid, Token: e.token(svc, sid).Token})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Conn
}

// load reads a session; it fails the test if the session is gone.
func (e *env) load(sid protocol.SessionID) *store.Snapshot {
	e.t.Helper()
	snap, err := e.st.Load(context.Background(), sid)
	if err != nil {
		e.t.Fatalf("load %s: %v", sid, err)
	}
	return snap
}

// conn reads one connection of a session (nil if it is gone).
func (e *env) conn(sid protocol.SessionID, cid protocol.ConnectionID) *store.Connection {
	e.t.Helper()
	return e.load(sid).Conns[cid]
}

// update changes a session's stored state directly: the arrangement of a
// state that the requests under test then meet.
func (e *env) update(sid protocol.SessionID, fn func(tx *store.Tx)) {
	e.t.Helper()
	if err := e.st.Update(context.Background(), sid, func(tx *store.Tx) error { fn(tx); return nil }); err != nil {
		e.t.Fatal(err)
	}
}

// note is one outbox entry as a participant would get it.
type note struct {
	ID           string // the outbox entry's id: "<ms>-<seq>"
	Method       string
	ConnectionID protocol.ConnectionID // params.connectionId
	Reason       string                // params.reason
	StreamID     protocol.StreamID     // params.streamId
	Raw          string
}

// outbox returns a connection's queued notifications, oldest first.
func (e *env) outbox(sid protocol.SessionID, cid protocol.ConnectionID) []note {
	e.t.Helper()
	entries, err := e.st.ReadOutbox(context.Background(), sid, cid, 10000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]note, 0, len(entries))
	for _, en := range entries {
		n := note{ID: en.ID, Method: en.Method, Raw: string(en.Params)}
		var p struct {
			ConnectionID protocol.ConnectionID `json:"connectionId"`
			Reason       string                `json:"reason"`
			StreamID     protocol.StreamID     `json:"streamId"`
		}
		_ = json.Unmarshal(en.Params, &p)
		n.ConnectionID, n.Reason, n.StreamID = p.ConnectionID, p.Reason, p.StreamID
		out = append(out, n)
	}
	return out
}

// methods lists the methods of notes.
func methods(notes []note) []string {
	out := make([]string, len(notes))
	for i, n := range notes {
		out[i] = n.Method
	}
	return out
}

// event is one event of a session's (or the cluster's) stream.
type event struct {
	Name         string
	Reason       string
	ConnectionID protocol.ConnectionID
	StreamID     protocol.StreamID
	Direction    string // webrtcConnection*: INBOUND or OUTBOUND
	Body         map[string]any
}

func (ev event) String() string {
	s := ev.Name
	for _, f := range []string{ev.Direction, string(ev.ConnectionID), ev.Reason} {
		if f != "" {
			s += " " + f
		}
	}
	return s
}

// events returns the events of a session's stream ("cluster" for the
// cluster's), in order. Nothing delivers them in these tests, so the stream
// holds every event emitted.
func (e *env) events(sid protocol.SessionID) []event {
	e.t.Helper()
	msgs, err := e.st.Redis().XRange(context.Background(), e.st.Prefix()+":{"+string(sid)+"}:ev", "-", "+").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]event, 0, len(msgs))
	for _, m := range msgs {
		ev := event{}
		ev.Name, _ = m.Values["n"].(string)
		body, _ := m.Values["b"].(string)
		if err := json.Unmarshal([]byte(body), &ev.Body); err != nil {
			e.t.Fatalf("event body %q: %v", body, err)
		}
		ev.Reason, _ = ev.Body["reason"].(string)
		cid, _ := ev.Body["connectionId"].(string)
		stream, _ := ev.Body["streamId"].(string)
		ev.ConnectionID, ev.StreamID = protocol.ConnectionID(cid), protocol.StreamID(stream)
		ev.Direction, _ = ev.Body["connection"].(string)
		out = append(out, ev)
	}
	return out
}

// eventStrings renders events for comparison.
func eventStrings(evs []event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.String()
	}
	return out
}

// sessionKeys lists the Redis keys of one session (its hash slot), sorted,
// without the prefix: "{sid}", "{sid}:ev", "{sid}:ob:<cid>", "{sid}:tomb".
func (e *env) sessionKeys(sid protocol.SessionID) []string {
	e.t.Helper()
	keys, err := e.st.Redis().Keys(context.Background(), e.st.Prefix()+":{"+string(sid)+"}*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	for i, k := range keys {
		keys[i] = strings.TrimPrefix(k, e.st.Prefix()+":")
	}
	slices.Sort(keys)
	return keys
}

// evictions returns the scheduled evictions: "<sid> <cid>" -> deadline (ms).
func (e *env) evictions() map[string]int64 {
	e.t.Helper()
	zs, err := e.st.Redis().ZRangeWithScores(context.Background(), e.st.Prefix()+":evict", 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, z := range zs {
		out[z.Member.(string)] = int64(z.Score)
	}
	return out
}

// masterConns lists "<sid> <cid>" whose WebSocket a master incarnation holds.
func (e *env) masterConns(master protocol.MasterID) []string {
	e.t.Helper()
	m, err := e.st.Redis().SMembers(context.Background(), e.st.Prefix()+":{masters}:conns:"+string(master)).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// indexed reports whether a session id is in the listing index.
func (e *env) indexed(sid protocol.SessionID) bool {
	e.t.Helper()
	_, ok := e.st.SessionIndexedAt(context.Background(), sid)
	return ok
}

// waitFor polls cond every 10 ms until it holds, failing the test after
// waitTimeout.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	waitFor(e.t, what, cond)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls check until it finds nothing wrong (""), and reports
// what it last found wrong after waitTimeout. It checks what happens after
// a change commits (endpoint releases, index updates by whoever made it).
func (e *env) eventually(check func() string) {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		problem := check()
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Error(problem)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessionError returns err as a *session.Error, failing the test otherwise.
func sessionError(t *testing.T, err error) *session.Error {
	t.Helper()
	var se *session.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *session.Error", err, err)
	}
	return se
}

// browser is the media side of test participants: pion peer connections
// restricted to loopback, as the browsers of the end-to-end tests. Every
// peer connection it makes is closed when the test ends.
type browser struct {
	t   *testing.T
	api *webrtc.API
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, api: webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))}
}

func (b *browser) peerConnection() *webrtc.PeerConnection {
	b.t.Helper()
	pc, err := b.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// offer returns a publisher's SDP offer (audio and video, send-only), as
// publishVideo and a publisher's reconnectStream carry it.
func (b *browser) offer() string {
	b.t.Helper()
	pc := b.peerConnection()
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			b.t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.setLocal(pc, offer)
}

// answer answers a media node's subscriber offer, as receiveVideoFrom (or
// reconnectStream after forciblyReconnectSubscriber) carries it.
func (b *browser) answer(offer string) string {
	b.t.Helper()
	pc := b.peerConnection()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		b.t.Fatal(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.setLocal(pc, answer)
}

func (b *browser) setLocal(pc *webrtc.PeerConnection, desc webrtc.SessionDescription) string {
	b.t.Helper()
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		b.t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(waitTimeout):
		b.t.Fatal("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP
}

// publish makes participant cid publish (publishVideo) and returns its
// stream id.
func (e *env) publish(svc *session.Service, b *browser, sid protocol.SessionID, cid protocol.ConnectionID) protocol.StreamID {
	e.t.Helper()
	pub, err := svc.Publish(context.Background(), sid, cid, session.PublishRequest{SDPOffer: b.offer(),
		MediaOptions: store.MediaOptions{HasAudio: true, AudioActive: true, HasVideo: true, VideoActive: true, TypeOfVideo: "CAMERA", FrameRate: 30}})
	if err != nil {
		e.t.Fatal(err)
	}
	return pub.StreamID
}

// subscribe makes participant cid subscribe to a stream
// (prepareReceiveVideoFrom, then receiveVideoFrom with its answer; the
// stream id is their sender).
func (e *env) subscribe(svc *session.Service, b *browser, sid protocol.SessionID, cid protocol.ConnectionID, streamID protocol.StreamID) {
	e.t.Helper()
	offer, err := svc.PrepareSubscribe(context.Background(), sid, cid, string(streamID))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := svc.CompleteSubscribe(context.Background(), sid, cid, string(streamID), b.answer(offer), false); err != nil {
		e.t.Fatal(err)
	}
}

// group runs goroutines that a test owns and waits for them at cleanup.
type group struct{ wg sync.WaitGroup }

// goGroup returns a group whose goroutines the test waits for when it ends.
func goGroup(t *testing.T) *group {
	g := &group{}
	t.Cleanup(g.wg.Wait)
	return g
}

func (g *group) Go(f func()) {
	g.wg.Add(1)
	go func() { defer g.wg.Done(); f() }()
}
