package signaling_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// TestJoinWithTheSecretIsASubscriber: joinRoom with the OpenVidu secret
// instead of a token makes a connection whose role is SUBSCRIBER, as
// openvidu-server 2 gives its "insecure" participants (RpcHandler.joinRoom),
// and that role holds: its publishVideo is refused as a subscriber's, and
// the REST API shows SUBSCRIBER. A wrong secret joins nobody.
func TestJoinWithTheSecretIsASubscriber(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	newSession(t, c, "insecure")

	wrong := dialRaw(t, ctx, c, "insecure")
	if resp := wrong.call(ctx, "joinRoom", map[string]any{"token": "x", "session": "insecure", "platform": "go", "metadata": "",
		"secret": clustertest.Secret + "x"}); resp.Error == nil || resp.Error.Code != protocol.CodeUserUnauthorized {
		t.Errorf("joinRoom with a wrong secret: %+v, want error 401", resp)
	}

	sock := dialRaw(t, ctx, c, "insecure")
	resp := sock.call(ctx, "joinRoom", map[string]any{"token": "x", "session": "insecure", "platform": "go", "metadata": "", "secret": clustertest.Secret})
	if resp.Error != nil {
		t.Fatalf("joinRoom with the secret: %+v", resp.Error)
	}
	var jr protocol.JoinRoomResult
	if err := json.Unmarshal(resp.Result, &jr); err != nil {
		t.Fatal(err)
	}
	if jr.Role != protocol.RoleSubscriber {
		t.Errorf("joinRoom with the secret gave role %q, want %s", jr.Role, protocol.RoleSubscriber)
	}
	st, body := rest(t, c, "GET", "/openvidu/api/sessions/insecure/connection/"+jr.ID, "")
	var conn protocol.Connection
	if err := json.Unmarshal(body, &conn); st != 200 || err != nil || conn.Role != protocol.RoleSubscriber {
		t.Errorf("GET its connection: %d %s, want role %s", st, body, protocol.RoleSubscriber)
	}
	pub := sock.call(ctx, "publishVideo", map[string]any{"sdpOffer": "v=0\r\n", "doLoopback": false, "hasAudio": true, "hasVideo": false,
		"audioActive": true, "videoActive": false, "typeOfVideo": "", "frameRate": 30, "videoDimensions": ""})
	if pub.Error == nil || pub.Error.Code != protocol.CodeUserUnauthorized {
		t.Errorf("publishVideo of the secret's participant: %+v, want error 401", pub)
	}
}

// TestReportedClientIP: the connection's "ip" a master reports is the
// client's, through the Chorus proxy: the peer of the proxy when it trusts
// no proxy in front of it (a forged X-Forwarded-For is dropped), the
// client a trusted load balancer forwarded for when proxy.trusted_proxies
// names it (here the test itself plays the balancer, from 127.0.0.1; the
// entry before the client's is forged and ignored).
func TestReportedClientIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
		want    string
	}{
		{"no trusted proxy", nil, "127.0.0.1"},
		{"behind a trusted balancer", []string{"127.0.0.0/8"}, "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1, Proxy: true,
				Configure: func(cfg *config.Config) { cfg.Proxy.TrustedProxies = tc.trusted }})
			newSession(t, c, "ip")
			token := newToken(t, c, "ip", protocol.RolePublisher)
			ws, _, err := websocket.Dial(ctx, strings.Replace(c.ProxyURLs[0], "http", "ws", 1)+"/openvidu?sessionId=ip",
				&websocket.DialOptions{HTTPHeader: http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.9"}}})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			sock := &rawSocket{t: t, ws: ws}
			resp := sock.call(ctx, "joinRoom", map[string]any{"token": token, "session": "ip", "platform": "go", "metadata": "", "secret": ""})
			if resp.Error != nil {
				t.Fatalf("joinRoom: %+v", resp.Error)
			}
			var jr protocol.JoinRoomResult
			_ = json.Unmarshal(resp.Result, &jr)
			st, body := rest(t, c, "GET", "/openvidu/api/sessions/ip/connection/"+jr.ID, "")
			var conn protocol.Connection
			if err := json.Unmarshal(body, &conn); st != 200 || err != nil || conn.IP == nil || *conn.IP != tc.want {
				t.Errorf("connection: %d %s, want ip %s", st, body, tc.want)
			}
		})
	}
}
