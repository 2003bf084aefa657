package signaling_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// frameLog is a participant's socket whose every incoming frame is kept, in
// order, so a test can tell what arrived after a given response.
type frameLog struct {
	t  *testing.T
	ws *websocket.Conn

	mu     sync.Mutex
	frames []frame
	at     []time.Time // when each frame was read
	nextID int
	paused chan struct{} // while not nil, the reader waits for it to close
	seen   chan struct{}
	done   chan struct{}
}

// pause stops reading frames (the server's writes back up) until resume.
func (f *frameLog) pause() {
	f.mu.Lock()
	f.paused = make(chan struct{})
	f.mu.Unlock()
}

func (f *frameLog) resume() {
	f.mu.Lock()
	close(f.paused)
	f.paused = nil
	f.mu.Unlock()
}

type frame struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// joinLogged joins a session with a fresh token over a bare socket.
func joinLogged(t *testing.T, ctx context.Context, c *clustertest.Cluster, sid, role string) (*frameLog, string) {
	t.Helper()
	return joinLoggedAs(t, ctx, c, sid, role, "go")
}

// joinLoggedAs is joinLogged with the platform joinRoom reports (with the
// IP, what tells one client's connections from another's).
func joinLoggedAs(t *testing.T, ctx context.Context, c *clustertest.Cluster, sid, role, platform string) (*frameLog, string) {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, strings.Replace(c.MasterURLs[0], "http", "ws", 1)+"/openvidu?sessionId="+sid, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(16 << 20)
	f := &frameLog{t: t, ws: ws, seen: make(chan struct{}, 1), done: make(chan struct{})}
	go f.read()
	t.Cleanup(func() { _ = ws.CloseNow(); <-f.done })
	res := f.call(ctx, "joinRoom", map[string]any{"token": newToken(t, c, sid, role), "session": sid, "platform": platform, "metadata": "", "secret": ""})
	var jr protocol.JoinRoomResult
	if res.Error != nil || json.Unmarshal(res.Result, &jr) != nil {
		t.Fatalf("joinRoom: %s", res.Error)
	}
	return f, jr.ID
}

func (f *frameLog) read() {
	defer close(f.done)
	for {
		f.mu.Lock()
		gate := f.paused
		f.mu.Unlock()
		if gate != nil {
			<-gate
		}
		_, msg, err := f.ws.Read(context.Background())
		if err != nil {
			return
		}
		var fr frame
		if json.Unmarshal(msg, &fr) != nil {
			continue
		}
		f.mu.Lock()
		f.frames = append(f.frames, fr)
		f.at = append(f.at, time.Now())
		f.mu.Unlock()
		select {
		case f.seen <- struct{}{}:
		default:
		}
	}
}

// send writes a request and returns its id.
func (f *frameLog) send(ctx context.Context, method string, params any) string {
	f.mu.Lock()
	f.nextID++
	id := f.nextID
	f.mu.Unlock()
	raw, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err := f.ws.Write(ctx, websocket.MessageText, raw); err != nil {
		f.t.Errorf("send %s: %v", method, err)
	}
	return fmt.Sprint(id)
}

// response waits for the response to request id and returns its position
// among the frames received.
func (f *frameLog) response(ctx context.Context, id string) (frame, int) {
	for {
		f.mu.Lock()
		for i, fr := range f.frames {
			if string(fr.ID) == id && fr.Method == "" {
				f.mu.Unlock()
				return fr, i
			}
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			f.t.Fatalf("no response to request %s", id)
		case <-f.seen:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (f *frameLog) call(ctx context.Context, method string, params any) frame {
	res, _ := f.response(ctx, f.send(ctx, method, params))
	return res
}

// after returns the frames received after position i.
func (f *frameLog) after(i int) []frame {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]frame(nil), f.frames[i+1:]...)
}

// arrival returns when the first notification of method arrived, or false.
func (f *frameLog) arrival(method string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, fr := range f.frames {
		if fr.Method == method {
			return f.at[i], true
		}
	}
	return time.Time{}, false
}

// waitFor waits until a notification of method arrives.
func (f *frameLog) waitFor(ctx context.Context, method string) {
	for {
		f.mu.Lock()
		for _, fr := range f.frames {
			if fr.Method == method {
				f.mu.Unlock()
				return
			}
		}
		f.mu.Unlock()
		select {
		case <-ctx.Done():
			f.t.Fatalf("no %s", method)
		case <-f.seen:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestNothingAfterLeaveRoom: OpenVidu sends nothing to a participant once it
// has answered its leaveRoom. Two connections of one client (camera and
// screen) leave at the same instant, and a leave races a moderator's
// forceDisconnect: no frame follows a leaveRoom answer. Connections leave
// while signals keep their outboxes busy (a browser's camera and screen
// connections leaving together are the same race, rarer).
func TestNothingAfterLeaveRoom(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	quiet := 500 * time.Millisecond // how long a late frame has to show up

	t.Run("connections leave while notifications flow", func(t *testing.T) {
		sid := "together"
		newSession(t, c, sid)
		chatty, _ := joinLogged(t, ctx, c, sid, protocol.RolePublisher)
		var leaving []*frameLog
		for range 2 {
			f, _ := joinLogged(t, ctx, c, sid, protocol.RolePublisher)
			leaving = append(leaving, f)
		}
		leaving[0].waitFor(ctx, protocol.NotifyParticipantJoined)
		// The leaving clients stop reading while big signals pile up: the
		// server is in the middle of writing to them when their leaveRoom
		// commits (a busy browser is the same, slower).
		for _, f := range leaving {
			f.pause()
		}
		data := strings.Repeat("x", 50_000)
		for i := range 100 {
			chatty.send(ctx, "sendMessage", map[string]any{"message": fmt.Sprintf(`{"to":[],"data":"%d%s","type":"signal:chat"}`, i, data)})
		}
		chatty.response(ctx, "101") // the last signal (joinRoom was 1)
		var ids []string
		for _, f := range leaving {
			ids = append(ids, f.send(ctx, "leaveRoom", map[string]any{}))
		}
		time.Sleep(quiet)
		for i, f := range leaving {
			f.resume()
			res, at := f.response(ctx, ids[i])
			if res.Error != nil {
				t.Fatalf("leaveRoom: %s", res.Error)
			}
			time.Sleep(quiet)
			if late := f.after(at); len(late) > 0 {
				t.Errorf("connection %d got %d frame(s) after its leaveRoom answer, first %s", i, len(late), late[0].Method)
			}
		}
		chatty.call(ctx, "leaveRoom", map[string]any{})
	})

	t.Run("a leave races a forceDisconnect", func(t *testing.T) {
		for round := range 10 {
			sid := fmt.Sprintf("kicked%d", round)
			newSession(t, c, sid)
			mod, _ := joinLogged(t, ctx, c, sid, protocol.RoleModerator)
			victim, victimID := joinLogged(t, ctx, c, sid, protocol.RolePublisher)
			mod.waitFor(ctx, protocol.NotifyParticipantJoined)
			mod.send(ctx, "forceDisconnect", map[string]any{"connectionId": victimID})
			id := victim.send(ctx, "leaveRoom", map[string]any{})
			_, at := victim.response(ctx, id)
			time.Sleep(quiet)
			if late := victim.after(at); len(late) > 0 {
				t.Errorf("round %d: %d frame(s) after the leaveRoom answer, first %s %s", round, len(late), late[0].Method, late[0].Params)
			}
			mod.call(ctx, "leaveRoom", map[string]any{})
		}
	})
	c.AssertNoLeftovers(t)
}

// TestDepartureHeldForOwnClient: a page leaving with two connections
// (openvidu-call's camera and screen) sends its second leaveRoom only once
// the first disconnect() has torn its media down, up to ~1 s on a loaded
// machine: that second connection must not hear of the first one leaving
// (openvidu-browser logs an unknown connection). Other clients (another
// platform) hear of a departure at once.
func TestDepartureHeldForOwnClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	const page, other = "Chrome 130 on Linux 64-bit", "Firefox 128 on Windows 10"
	const teardown = 800 * time.Millisecond // the first disconnect() before the second leaveRoom

	sid := "departures"
	newSession(t, c, sid)
	witness, _ := joinLoggedAs(t, ctx, c, sid, protocol.RolePublisher, other)
	camera, _ := joinLoggedAs(t, ctx, c, sid, protocol.RolePublisher, page)
	screen, _ := joinLoggedAs(t, ctx, c, sid, protocol.RolePublisher, page)
	camera.waitFor(ctx, protocol.NotifyParticipantJoined)
	witness.waitFor(ctx, protocol.NotifyParticipantJoined)

	left := time.Now()
	camera.response(ctx, camera.send(ctx, "leaveRoom", map[string]any{}))
	time.Sleep(teardown)
	_, at := screen.response(ctx, screen.send(ctx, "leaveRoom", map[string]any{}))
	witness.waitFor(ctx, protocol.NotifyParticipantLeft)
	if got, _ := witness.arrival(protocol.NotifyParticipantLeft); got.Sub(left) > 250*time.Millisecond {
		t.Errorf("another client heard of the departure %s after it, want at once", got.Sub(left).Round(time.Millisecond))
	}
	time.Sleep(500 * time.Millisecond)
	screen.mu.Lock()
	before := append([]frame(nil), screen.frames[:at]...)
	screen.mu.Unlock()
	for _, fr := range before {
		if fr.Method == protocol.NotifyParticipantLeft {
			t.Errorf("the page's second connection heard of its first one leaving: %s", fr.Params)
		}
	}
	if late := screen.after(at); len(late) > 0 {
		t.Errorf("%d frame(s) after the leaveRoom answer, first %s", len(late), late[0].Method)
	}
	witness.call(ctx, "leaveRoom", map[string]any{})
	c.AssertNoLeftovers(t)
}
