package restapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// TestSignalSizeOverREST: POST /openvidu/api/signal with data past
// limits.signal_data_bytes (64 KiB by default) answers 400, as openvidu-server
// answers a signal it cannot send, and reaches nobody; 64 000 B pass
// (LiveKit's data packet size).
func TestSignalSizeOverREST(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	base := c.MasterURLs[0]
	expect := func(name string, cl call, status int) []byte {
		t.Helper()
		resp, body := do(t, base, cl)
		if resp.StatusCode != status {
			t.Fatalf("%s: %s %s answered %d, want %d: %s", name, cl.method, cl.path, resp.StatusCode, status, body)
		}
		return body
	}
	expect("create session", call{method: "POST", path: "/openvidu/api/sessions", body: `{"customSessionId":"signals"}`}, 200)
	var conn protocol.Connection
	if err := json.Unmarshal(expect("connection", call{method: "POST", path: "/openvidu/api/sessions/signals/connection", body: `{}`}, 200), &conn); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := participant.Join(ctx, participant.Config{Token: conn.Token, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	signal := func(data string) call {
		return call{method: "POST", path: "/openvidu/api/signal", body: fmt.Sprintf(`{"session":"signals","type":"chat","data":%q}`, data)}
	}
	body := expect("a signal of 64 KiB + 1 B", signal(strings.Repeat("x", 64<<10+1)), 400)
	if !strings.Contains(string(body), `"status":400`) {
		t.Errorf("the 400's body is not OpenVidu's error object: %s", body)
	}
	expect("a signal of 64 000 B", signal(strings.Repeat("y", 64_000)), 200)
	err = p.WaitFor(ctx, func(p *participant.Participant) bool {
		for _, ev := range p.Events() {
			if ev.Method == protocol.NotifySendMessage {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal("the 64 000 B signal never arrived")
	}
	var sizes []int
	for _, ev := range p.Events() {
		if ev.Method == protocol.NotifySendMessage {
			var n protocol.SignalNotification
			_ = json.Unmarshal(ev.Params, &n)
			sizes = append(sizes, len(*n.Data))
		}
	}
	if len(sizes) != 1 || sizes[0] != 64_000 {
		t.Errorf("the participant got signals of %v bytes, want only the 64 000 B one", sizes)
	}
}
