package signaling_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pion's mDNS-less ICE agents and net/http's idle connections close asynchronously.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

var httpClient = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// rest calls a master's REST API and returns the status and body.
func rest(t *testing.T, c *clustertest.Cluster, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.MasterURLs[0]+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("OPENVIDUAPP", clustertest.Secret)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func newSession(t *testing.T, c *clustertest.Cluster, id string) {
	t.Helper()
	if st, body := rest(t, c, "POST", "/openvidu/api/sessions", fmt.Sprintf(`{"customSessionId":%q}`, id)); st != 200 {
		t.Fatalf("create session: %d %s", st, body)
	}
}

func newToken(t *testing.T, c *clustertest.Cluster, sid, role string) string {
	t.Helper()
	st, body := rest(t, c, "POST", "/openvidu/api/sessions/"+sid+"/connection", fmt.Sprintf(`{"role":%q}`, role))
	if st != 200 {
		t.Fatalf("create connection: %d %s", st, body)
	}
	var conn protocol.Connection
	if err := json.Unmarshal(body, &conn); err != nil {
		t.Fatal(err)
	}
	return conn.Token
}

func join(t *testing.T, ctx context.Context, c *clustertest.Cluster, sid, role string) *participant.Participant {
	t.Helper()
	p, err := participant.Join(ctx, participant.Config{Token: newToken(t, c, sid, role), LoopbackOnly: true, Metadata: `{"clientData":"go"}`})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func eventsOf(p *participant.Participant, method string) []participant.Event {
	var out []participant.Event
	for _, e := range p.Events() {
		if e.Method == method {
			out = append(out, e)
		}
	}
	return out
}

func waitEvents(t *testing.T, ctx context.Context, p *participant.Participant, method string, n int) []participant.Event {
	t.Helper()
	err := p.WaitFor(ctx, func(p *participant.Participant) bool { return len(eventsOf(p, method)) >= n })
	if err != nil {
		t.Fatalf("waiting for %d %s: %v (got %d)", n, method, err, len(eventsOf(p, method)))
	}
	return eventsOf(p, method)
}

func TestPublishSubscribeLeave(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 2, MediaNodes: 1})
	newSession(t, c, "pubsub")

	alice := join(t, ctx, c, "pubsub", protocol.RolePublisher)
	bob := join(t, ctx, c, "pubsub", protocol.RoleSubscriber)
	joined := waitEvents(t, ctx, alice, protocol.NotifyParticipantJoined, 1)
	var rc protocol.RemoteConnection
	_ = json.Unmarshal(joined[0].Params, &rc)
	if rc.ID != bob.ConnectionID() || rc.Metadata == nil || *rc.Metadata != `{"clientData":"go"}` {
		t.Errorf("participantJoined = %s, want bob %s with his metadata", joined[0].Params, bob.ConnectionID())
	}
	if jr := bob.JoinResult(); len(jr.Value) != 1 || jr.Value[0].ID != alice.ConnectionID() || jr.Version != protocol.Version || jr.Role != protocol.RoleSubscriber || jr.SessionID == "" {
		t.Errorf("bob's joinRoom result = %+v", jr)
	}

	pub, err := alice.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
	if err != nil {
		t.Fatal(err)
	}
	go pub.SendSynthetic(ctx, participant.DefaultVideo)
	streams, err := bob.WaitForStreams(ctx, 1)
	if err != nil || streams[0] != pub.StreamID {
		t.Fatalf("bob sees streams %v (%v), want %s", streams, err, pub.StreamID)
	}
	sub, err := bob.Subscribe(ctx, pub.StreamID)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for st := sub.Stats(); st.VideoPackets < 100 || st.AudioPackets < 50; st = sub.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("bob received too little: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The publisher renegotiates (reconnectStream): same stream id, nobody is
	// told, and the subscriber keeps receiving from the new peer connection.
	if err := alice.Reconnect(ctx, pub); err != nil {
		t.Fatalf("reconnectStream: %v", err)
	}
	before := sub.Stats().VideoPackets
	deadline = time.Now().Add(15 * time.Second)
	for sub.Stats().VideoPackets < before+100 {
		if time.Now().After(deadline) {
			t.Fatalf("no media after the publisher's reconnection: %+v", sub.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(eventsOf(bob, protocol.NotifyParticipantUnpublished)) + len(eventsOf(bob, protocol.NotifyParticipantPublished)); n != 1 {
		t.Errorf("bob got %d publish/unpublish notifications, want just the first participantPublished", n)
	}
	// A subscriber may not publish.
	if _, err := bob.Publish(ctx, participant.PublishOptions{Video: true}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a SUBSCRIBER's publish: %v, want error 401", err)
	}

	// The REST API sees the stream and the subscription.
	st, body := rest(t, c, "GET", "/openvidu/api/sessions/pubsub", "")
	var s protocol.Session
	if err := json.Unmarshal(body, &s); st != 200 || err != nil {
		t.Fatalf("GET session: %d %s", st, body)
	}
	if s.Connections.NumberOfElements != 2 || s.MediaNodeID != "media_1" {
		t.Errorf("session has %d connections on %q", s.Connections.NumberOfElements, s.MediaNodeID)
	}
	for _, conn := range s.Connections.Content {
		switch conn.ConnectionID {
		case alice.ConnectionID():
			if len(conn.Publishers) != 1 || conn.Publishers[0].StreamID != pub.StreamID {
				t.Errorf("alice's publishers = %+v", conn.Publishers)
			}
		case bob.ConnectionID():
			if len(conn.Subscribers) != 1 || conn.Subscribers[0].StreamID != pub.StreamID {
				t.Errorf("bob's subscribers = %+v", conn.Subscribers)
			}
		}
	}

	if err := alice.Call(ctx, "unpublishVideo", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	unpub := waitEvents(t, ctx, bob, protocol.NotifyParticipantUnpublished, 1)
	if !strings.Contains(string(unpub[0].Params), `"reason":"unpublish"`) {
		t.Errorf("participantUnpublished = %s", unpub[0].Params)
	}
	if err := bob.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	left := waitEvents(t, ctx, alice, protocol.NotifyParticipantLeft, 1)
	if !strings.Contains(string(left[0].Params), `"reason":"disconnect"`) {
		t.Errorf("participantLeft = %s", left[0].Params)
	}
	if err := alice.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := rest(t, c, "GET", "/openvidu/api/sessions/pubsub", ""); st != 404 {
		t.Errorf("the session outlived its last participant: %d", st)
	}
	c.AssertNoLeftovers(t)
}

// rawSocket is a bare JSON-RPC socket, for requests no well-behaved client sends.
type rawSocket struct {
	t  *testing.T
	ws *websocket.Conn
	id int
}

func dialRaw(t *testing.T, ctx context.Context, c *clustertest.Cluster, sid protocol.SessionID) *rawSocket {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, strings.Replace(c.MasterURLs[0], "http", "ws", 1)+"/openvidu?sessionId="+string(sid), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	return &rawSocket{t: t, ws: ws}
}

type rawResponse struct {
	ID     json.RawMessage    `json:"id"`
	Result json.RawMessage    `json:"result"`
	Error  *protocol.RPCError `json:"error"`
}

func (r *rawSocket) send(ctx context.Context, frame string) rawResponse {
	r.t.Helper()
	if err := r.ws.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		r.t.Fatal(err)
	}
	for {
		_, msg, err := r.ws.Read(ctx)
		if err != nil {
			r.t.Fatalf("read after %s: %v", frame, err)
		}
		var resp rawResponse
		if json.Unmarshal(msg, &resp) == nil && (resp.Result != nil || resp.Error != nil) {
			return resp
		}
	}
}

func (r *rawSocket) call(ctx context.Context, method string, params any) rawResponse {
	r.t.Helper()
	r.id++
	raw, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": r.id, "method": method, "params": params})
	return r.send(ctx, string(raw))
}

func TestBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	newSession(t, c, "bad")
	sock := dialRaw(t, ctx, c, "bad")

	frames := []struct {
		name  string
		frame string
		code  int
	}{
		{"malformed JSON", `{"jsonrpc":"2.0","id":1,`, protocol.CodeParseError},
		{"not an object", `[1,2,3]`, protocol.CodeParseError},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, protocol.CodeInvalidRequest},
		{"no method", `{"jsonrpc":"2.0","id":2}`, protocol.CodeInvalidRequest},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"echo"}`, protocol.CodeInvalidRequest},
		{"unknown method before joinRoom", `{"jsonrpc":"2.0","id":3,"method":"hack"}`, protocol.CodeTransport},
		{"before joinRoom", `{"jsonrpc":"2.0","id":4,"method":"publishVideo","params":{}}`, protocol.CodeTransport},
		{"joinRoom without token", `{"jsonrpc":"2.0","id":5,"method":"joinRoom","params":{"session":"bad","platform":"x","metadata":""}}`, protocol.CodeInvalidParams},
		{"joinRoom bad params", `{"jsonrpc":"2.0","id":6,"method":"joinRoom","params":{"token":7}}`, protocol.CodeInvalidParams},
		{"invalid token", `{"jsonrpc":"2.0","id":7,"method":"joinRoom","params":{"token":"tok_nope","session":"bad","platform":"x","metadata":""}}`, protocol.CodeUserUnauthorized},
		{"unknown session", `{"jsonrpc":"2.0","id":8,"method":"joinRoom","params":{"token":"tok_nope","session":"nope","platform":"x","metadata":""}}`, protocol.CodeRoomNotFound},
		{"reconnect with a wrong id", `{"jsonrpc":"2.0","id":9,"method":"connect","params":{"sessionId":"forged","reconnect":true}}`, protocol.CodeReconnectionError},
	}
	for _, f := range frames {
		t.Run(f.name, func(t *testing.T) {
			resp := sock.send(ctx, f.frame)
			if resp.Error == nil || resp.Error.Code != f.code {
				t.Errorf("answer %+v, want error %d", resp, f.code)
			}
		})
	}
	// The socket survived every bad frame.
	if resp := sock.call(ctx, "ping", map[string]any{"interval": 5000}); string(resp.Result) != `{"value":"pong"}` {
		t.Errorf("ping after bad frames: %+v", resp)
	}

	// A token works once.
	token := newToken(t, c, "bad", protocol.RolePublisher)
	joinParams := map[string]any{"token": token, "session": "bad", "platform": "x", "metadata": "", "secret": ""}
	if resp := sock.call(ctx, "joinRoom", joinParams); resp.Error != nil {
		t.Fatalf("join: %+v", resp.Error)
	}
	other := dialRaw(t, ctx, c, "bad")
	if resp := other.call(ctx, "joinRoom", joinParams); resp.Error == nil || resp.Error.Code != protocol.CodeUserUnauthorized {
		t.Errorf("reused token: %+v, want 401", resp)
	}

	// Garbage SDP and unknown streams get errors; nothing is left behind.
	if resp := sock.call(ctx, "publishVideo", map[string]any{"sdpOffer": "v=0 garbage", "hasAudio": true, "hasVideo": true, "doLoopback": false}); resp.Error == nil || resp.Error.Code != protocol.CodeMediaSDP {
		t.Errorf("garbage SDP: %+v, want %d", resp, protocol.CodeMediaSDP)
	}
	if resp := sock.call(ctx, "prepareReceiveVideoFrom", map[string]any{"sender": "str_CAM_XXXX_con_nobody", "reconnect": false}); resp.Error == nil || resp.Error.Code != protocol.CodeUserNotFound {
		t.Errorf("unknown stream: %+v, want %d", resp, protocol.CodeUserNotFound)
	}
	if resp := sock.call(ctx, "sendMessage", map[string]any{"message": "{not json"}); resp.Error == nil || resp.Error.Code != protocol.CodeSignalFormatInvalid {
		t.Errorf("bad signal: %+v", resp)
	}
	if resp := sock.call(ctx, "sendMessage", map[string]any{"message": `{"to":["con_nobody"],"data":"x"}`}); resp.Error == nil || resp.Error.Code != protocol.CodeSignalToInvalid {
		t.Errorf("signal to nobody: %+v", resp)
	}

	// An oversized frame closes the socket with 1009.
	big := dialRaw(t, ctx, c, "bad")
	huge := `{"jsonrpc":"2.0","id":1,"method":"echo","params":{"x":"` + strings.Repeat("a", 2<<20) + `"}}`
	_ = big.ws.Write(ctx, websocket.MessageText, []byte(huge))
	if _, _, err := big.ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("oversized frame: %v, want close 1009", err)
	}

	// A client that vanishes mid-negotiation (publisher made, subscription
	// offered, never answered) is evicted after the grace period and its
	// endpoints released.
	pubber := join(t, ctx, c, "bad", protocol.RolePublisher)
	pub, err := pubber.Publish(ctx, participant.PublishOptions{Video: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp := sock.call(ctx, "prepareReceiveVideoFrom", map[string]any{"sender": pub.StreamID, "reconnect": false}); resp.Error != nil {
		t.Fatalf("prepareReceiveVideoFrom: %+v", resp.Error)
	}
	_ = sock.ws.CloseNow()
	_ = other.ws.CloseNow()
	left := waitEvents(t, ctx, pubber, protocol.NotifyParticipantLeft, 1)
	if !strings.Contains(string(left[0].Params), protocol.ReasonNetworkDisconnect) {
		t.Errorf("vanished participant left with %s", left[0].Params)
	}
	pubber.Close() // and the last one vanishes too
	c.AssertNoLeftovers(t)
}

func TestReconnectReplaysMissedNotificationsOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 2, MediaNodes: 1, ReconnectGrace: 10 * time.Second})
	newSession(t, c, "resume")
	token := newToken(t, c, "resume", protocol.RolePublisher)

	sock := dialRaw(t, ctx, c, "resume")
	resp := sock.call(ctx, "joinRoom", map[string]any{"token": token, "session": "resume", "platform": "x", "metadata": "", "secret": ""})
	var jr protocol.JoinRoomResult
	if resp.Error != nil || json.Unmarshal(resp.Result, &jr) != nil {
		t.Fatalf("join: %+v", resp)
	}
	_ = sock.ws.CloseNow() // the network breaks

	// While it is away, two others join: it must learn of both, once each.
	bob := join(t, ctx, c, "resume", protocol.RolePublisher)
	carol := join(t, ctx, c, "resume", protocol.RolePublisher)
	defer bob.Close()
	defer carol.Close()

	// It comes back on the other master.
	ws, _, err := websocket.Dial(ctx, strings.Replace(c.MasterURLs[1], "http", "ws", 1)+"/openvidu?sessionId=resume&reconnect=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	back := &rawSocket{t: t, ws: ws}
	resp = back.call(ctx, "connect", map[string]any{"sessionId": jr.SessionID, "reconnect": true})
	if resp.Error != nil || !strings.Contains(string(resp.Result), "reconnection successful") {
		t.Fatalf("connect: %+v", resp)
	}
	var joinedIDs []string
	readCtx, stop := context.WithTimeout(ctx, 3*time.Second)
	defer stop()
	for {
		_, msg, err := ws.Read(readCtx)
		if err != nil {
			break
		}
		var n struct {
			Method string                    `json:"method"`
			Params protocol.RemoteConnection `json:"params"`
		}
		if json.Unmarshal(msg, &n) == nil && n.Method == protocol.NotifyParticipantJoined {
			joinedIDs = append(joinedIDs, n.Params.ID)
		}
	}
	want := []string{bob.ConnectionID(), carol.ConnectionID()}
	if !slices.Equal(joinedIDs, want) {
		t.Errorf("replayed participantJoined for %v, want exactly %v in order", joinedIDs, want)
	}
	// Nobody saw it leave.
	if left := eventsOf(bob, protocol.NotifyParticipantLeft); len(left) != 0 {
		t.Errorf("bob saw %d participantLeft", len(left))
	}
	// Same connection, still active.
	st, body := rest(t, c, "GET", "/openvidu/api/sessions/resume/connection/"+jr.ID, "")
	if st != 200 || !bytes.Contains(body, []byte(`"status":"active"`)) {
		t.Errorf("connection after resume: %d %s", st, body)
	}
}

func TestModeratorAndSignals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	newSession(t, c, "mod")
	if st, _ := rest(t, c, "POST", "/openvidu/api/signal", `{"session":"mod","data":"x"}`); st != 406 {
		t.Errorf("signal to a session without participants: %d, want 406", st)
	}
	mod := join(t, ctx, c, "mod", protocol.RoleModerator)
	pubber := join(t, ctx, c, "mod", protocol.RolePublisher)
	viewer := join(t, ctx, c, "mod", protocol.RoleSubscriber)
	defer mod.Close()
	defer viewer.Close()
	pub, err := pubber.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
	if err != nil {
		t.Fatal(err)
	}

	// sendMessage to everybody reaches the sender too; REST signals have no "from".
	if err := mod.Call(ctx, "sendMessage", map[string]any{"message": `{"to":[],"data":"hello","type":"signal:chat"}`}, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*participant.Participant{mod, pubber, viewer} {
		got := waitEvents(t, ctx, p, protocol.NotifySendMessage, 1)
		if !strings.Contains(string(got[0].Params), `"from":"`+mod.ConnectionID()+`"`) || !strings.Contains(string(got[0].Params), `"type":"signal:chat"`) {
			t.Errorf("signal = %s", got[0].Params)
		}
	}
	if st, _ := rest(t, c, "POST", "/openvidu/api/signal", fmt.Sprintf(`{"session":"mod","to":[%q],"type":"server","data":"hi"}`, viewer.ConnectionID())); st != 200 {
		t.Errorf("REST signal: %d", st)
	}
	got := waitEvents(t, ctx, viewer, protocol.NotifySendMessage, 2)
	if strings.Contains(string(got[1].Params), "from") {
		t.Errorf("server signal carries a sender: %s", got[1].Params)
	}
	if st, _ := rest(t, c, "POST", "/openvidu/api/signal", `{"session":"mod","to":["con_nobody"]}`); st != 406 {
		t.Errorf("REST signal to nobody: %d, want 406", st)
	}

	// Only a moderator forces; everybody, the owner included, is told.
	if err := viewer.Call(ctx, "forceUnpublish", map[string]any{"streamId": pub.StreamID}, nil); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("forceUnpublish by a subscriber: %v", err)
	}
	if err := mod.Call(ctx, "forceUnpublish", map[string]any{"streamId": pub.StreamID}, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*participant.Participant{mod, pubber, viewer} {
		got := waitEvents(t, ctx, p, protocol.NotifyParticipantUnpublished, 1)
		if !strings.Contains(string(got[0].Params), protocol.ReasonForceUnpublishByUser) {
			t.Errorf("participantUnpublished = %s", got[0].Params)
		}
	}
	if err := mod.Call(ctx, "forceDisconnect", map[string]any{"connectionId": pubber.ConnectionID()}, nil); err != nil {
		t.Fatal(err)
	}
	evicted := waitEvents(t, ctx, pubber, protocol.NotifyParticipantEvicted, 1)
	if !strings.Contains(string(evicted[0].Params), pubber.ConnectionID()) || !strings.Contains(string(evicted[0].Params), protocol.ReasonForceDisconnectByUser) {
		t.Errorf("the victim got %s", evicted[0].Params)
	}
	waitEvents(t, ctx, viewer, protocol.NotifyParticipantLeft, 1)
	pubber.Close()

	// REST: PATCH tells the participant, DELETE connection evicts it.
	st, body := rest(t, c, "PATCH", "/openvidu/api/sessions/mod/connection/"+viewer.ConnectionID(), `{"role":"PUBLISHER"}`)
	if st != 200 || !bytes.Contains(body, []byte(`"role":"PUBLISHER"`)) {
		t.Errorf("PATCH: %d %s", st, body)
	}
	changed := waitEvents(t, ctx, viewer, protocol.NotifyConnectionPropertyChange, 1)
	if string(changed[0].Params) != `{"property":"role","newValue":"PUBLISHER"}` {
		t.Errorf("connectionPropertyChanged = %s", changed[0].Params)
	}
	if st, _ := rest(t, c, "DELETE", "/openvidu/api/sessions/mod/connection/"+viewer.ConnectionID(), ""); st != 204 {
		t.Errorf("DELETE connection: %d", st)
	}
	ev := waitEvents(t, ctx, viewer, protocol.NotifyParticipantEvicted, 2) // pubber's, then its own
	if own := string(ev[1].Params); !strings.Contains(own, viewer.ConnectionID()) || !strings.Contains(own, protocol.ReasonForceDisconnectByServer) {
		t.Errorf("evicted by REST with %s", own)
	}
	if st, _ := rest(t, c, "DELETE", "/openvidu/api/sessions/mod", ""); st != 204 {
		t.Errorf("DELETE session: %d", st)
	}
	ev = waitEvents(t, ctx, mod, protocol.NotifyParticipantEvicted, 3) // pubber's, viewer's, then its own
	if own := string(ev[2].Params); !strings.Contains(own, mod.ConnectionID()) || !strings.Contains(own, protocol.ReasonSessionClosedByServer) {
		t.Errorf("session close told the moderator %s", ev[len(ev)-1].Params)
	}
	mod.Close()
	viewer.Close()
	c.AssertNoLeftovers(t)
}
