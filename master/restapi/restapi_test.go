package restapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

var client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

type call struct {
	method, path, body string
	auth               string // "" = valid credentials, "none", or a wrong secret
}

func do(t *testing.T, base string, c call) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	switch c.auth {
	case "":
		req.SetBasicAuth("OPENVIDUAPP", clustertest.Secret)
	case "none":
	default:
		req.SetBasicAuth("OPENVIDUAPP", c.auth)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// TestStatusCodes walks the REST API through OpenVidu's answers, in order:
// each step may depend on the previous ones.
func TestStatusCodes(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	base := c.MasterURLs[0]
	var pendingID string
	steps := []struct {
		name   string
		call   call
		status int
		check  func(t *testing.T, resp *http.Response, body []byte)
	}{
		{"no credentials", call{method: "GET", path: "/openvidu/api/sessions", auth: "none"}, 401, func(t *testing.T, resp *http.Response, _ []byte) {
			if resp.Header.Get("WWW-Authenticate") != `Basic realm="Realm"` {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		}},
		{"wrong secret", call{method: "GET", path: "/openvidu/api/sessions", auth: "NOT_THE_SECRET"}, 401, nil},
		{"create with a generated id", call{method: "POST", path: "/openvidu/api/sessions", body: `{}`}, 200, func(t *testing.T, _ *http.Response, body []byte) {
			var s protocol.Session
			if err := json.Unmarshal(body, &s); err != nil || !strings.HasPrefix(s.ID, "ses_") || len(s.ID) != 14 || s.SessionID != s.ID || s.Object != "session" {
				t.Errorf("session %s (%v)", body, err)
			}
		}},
		{"create without a body", call{method: "POST", path: "/openvidu/api/sessions"}, 200, func(t *testing.T, _ *http.Response, body []byte) {
			if !strings.Contains(string(body), `"forcedVideoCodec":"MEDIA_SERVER_PREFERRED"`) {
				t.Errorf("%s", body)
			}
		}},
		{"create custom", call{method: "POST", path: "/openvidu/api/sessions", body: `{"customSessionId":"rest","mediaMode":"ROUTED","recordingMode":"MANUAL","customSessionId":"rest","defaultRecordingProperties":{"name":"","hasAudio":true}}`}, 200, nil},
		{"create it again", call{method: "POST", path: "/openvidu/api/sessions", body: `{"customSessionId":"rest"}`}, 409, nil},
		{"malformed body", call{method: "POST", path: "/openvidu/api/sessions", body: `{"customSessionId":`}, 400, func(t *testing.T, _ *http.Response, body []byte) {
			var e protocol.Error
			if err := json.Unmarshal(body, &e); err != nil || e.Status != 400 || e.Error != "Bad Request" || e.Path != "/openvidu/api/sessions" || e.Timestamp == 0 {
				t.Errorf("error body %s", body)
			}
		}},
		{"invalid custom id", call{method: "POST", path: "/openvidu/api/sessions", body: `{"customSessionId":"a/b"}`}, 400, nil},
		{"unknown media node", call{method: "POST", path: "/openvidu/api/sessions", body: `{"mediaNode":{"id":"media_nope"}}`}, 400, nil},
		{"pinned media node", call{method: "POST", path: "/openvidu/api/sessions", body: `{"customSessionId":"pinned","mediaNode":{"id":"media_1"}}`}, 200, func(t *testing.T, _ *http.Response, body []byte) {
			if !strings.Contains(string(body), `"mediaNode":{"id":"media_1"}`) {
				t.Errorf("%s", body)
			}
		}},
		{"get unknown session", call{method: "GET", path: "/openvidu/api/sessions/nope"}, 404, nil},
		{"bad boolean", call{method: "GET", path: "/openvidu/api/sessions/rest?pendingConnections=maybe"}, 400, nil},
		{"connection of unknown session", call{method: "POST", path: "/openvidu/api/sessions/nope/connection", body: `{}`}, 404, nil},
		{"connection with a bad role", call{method: "POST", path: "/openvidu/api/sessions/rest/connection", body: `{"role":"KING"}`}, 400, nil},
		{"IP camera connection", call{method: "POST", path: "/openvidu/api/sessions/rest/connection", body: `{"type":"IPCAM","rtspUri":"rtsp://cam"}`}, 501, nil},
		{"connection", call{method: "POST", path: "/openvidu/api/sessions/rest/connection", body: `{"role":"SUBSCRIBER","data":"d","record":false}`}, 200, func(t *testing.T, _ *http.Response, body []byte) {
			var conn protocol.Connection
			if err := json.Unmarshal(body, &conn); err != nil {
				t.Fatal(err)
			}
			pendingID = conn.ConnectionID
			if conn.Status != "pending" || conn.Role != "SUBSCRIBER" || conn.Record || conn.ServerData != "d" ||
				!strings.HasPrefix(conn.Token, "ws://127.0.0.1:") || !strings.Contains(conn.Token, "?sessionId=rest&token=tok_") ||
				conn.ActiveAt != nil || conn.Publishers != nil || !strings.Contains(string(body), `"customIceServers":[]`) {
				t.Errorf("pending connection %s", body)
			}
			if i := strings.Index(conn.Token, "tok_"); len(conn.Token)-i < 4+22 {
				t.Errorf("token %s has fewer than 128 bits of randomness", conn.Token)
			}
		}},
		{"list connections (pending by default)", call{method: "GET", path: "/openvidu/api/sessions/rest/connection"}, 200, func(t *testing.T, _ *http.Response, body []byte) {
			if !strings.Contains(string(body), `"numberOfElements":1`) {
				t.Errorf("%s", body)
			}
		}},
		{"session without pending connections", call{method: "GET", path: "/openvidu/api/sessions/rest"}, 200, func(t *testing.T, _ *http.Response, body []byte) {
			if !strings.Contains(string(body), `"connections":{"numberOfElements":0,"content":[]}`) {
				t.Errorf("%s", body)
			}
		}},
		{"get connection of unknown session", call{method: "GET", path: "/openvidu/api/sessions/nope/connection/con_x"}, 400, nil},
		{"get unknown connection", call{method: "GET", path: "/openvidu/api/sessions/rest/connection/con_x"}, 404, nil},
		{"patch unknown connection", call{method: "PATCH", path: "/openvidu/api/sessions/rest/connection/con_x", body: `{"role":"PUBLISHER"}`}, 404, nil},
		{"patch unknown session", call{method: "PATCH", path: "/openvidu/api/sessions/nope/connection/con_x", body: `{"role":"PUBLISHER"}`}, 404, nil},
		{"delete connection of unknown session", call{method: "DELETE", path: "/openvidu/api/sessions/nope/connection/con_x"}, 400, nil},
		{"delete unknown connection", call{method: "DELETE", path: "/openvidu/api/sessions/rest/connection/con_x"}, 404, nil},
		{"unpublish in unknown session", call{method: "DELETE", path: "/openvidu/api/sessions/nope/stream/str_x"}, 400, nil},
		{"unpublish in an inactive session", call{method: "DELETE", path: "/openvidu/api/sessions/rest/stream/str_x"}, 404, nil},
		{"signal without session", call{method: "POST", path: "/openvidu/api/signal", body: `{"data":"x"}`}, 400, nil},
		{"signal to unknown session", call{method: "POST", path: "/openvidu/api/signal", body: `{"session":"nope"}`}, 404, nil},
		{"signal to an inactive session", call{method: "POST", path: "/openvidu/api/signal", body: `{"session":"rest"}`}, 406, nil},
		{"token without session", call{method: "POST", path: "/openvidu/api/tokens", body: `{}`}, 400, nil},
		{"token of unknown session", call{method: "POST", path: "/openvidu/api/tokens", body: `{"session":"nope"}`}, 404, nil},
		{"token", call{method: "POST", path: "/openvidu/api/tokens", body: `{"session":"rest","role":"MODERATOR","data":"x","kurentoOptions":null}`}, 200, func(t *testing.T, _ *http.Response, body []byte) {
			var tok protocol.Token
			if err := json.Unmarshal(body, &tok); err != nil || tok.Role != "MODERATOR" || tok.Session != "rest" || tok.Token != tok.ID || !strings.HasPrefix(tok.ConnectionID, "con_") {
				t.Errorf("token %s", body)
			}
		}},
		{"recordings are disabled", call{method: "POST", path: "/openvidu/api/recordings/start", body: `{"session":"rest"}`}, 501, nil},
		{"legacy path", call{method: "GET", path: "/api/sessions/rest"}, 200, nil},
		{"trailing slash", call{method: "GET", path: "/openvidu/api/sessions/"}, 404, nil},
		{"unknown path", call{method: "GET", path: "/openvidu/api/nothing"}, 404, nil},
		{"config", call{method: "GET", path: "/openvidu/api/config"}, 200, func(t *testing.T, _ *http.Response, body []byte) {
			if !strings.HasPrefix(string(body), `{"VERSION":"2.32.0"`) {
				t.Errorf("%s", body)
			}
		}},
		{"health", call{method: "GET", path: "/openvidu/api/health"}, 200, func(t *testing.T, _ *http.Response, body []byte) {
			if !strings.Contains(string(body), `"status":"UP"`) || !strings.Contains(string(body), `"master_1.1"`) {
				t.Errorf("%s", body)
			}
		}},
		{"public URL needs no credentials", call{method: "GET", path: "/openvidu/api/config/openvidu-publicurl", auth: "none"}, 200, nil},
		{"CORS preflight", call{method: "OPTIONS", path: "/openvidu/api/sessions", auth: "none"}, 200, func(t *testing.T, resp *http.Response, _ []byte) {
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Error("no Access-Control-Allow-Origin")
			}
		}},
		{"delete session", call{method: "DELETE", path: "/openvidu/api/sessions/rest"}, 204, nil},
		{"delete it again", call{method: "DELETE", path: "/openvidu/api/sessions/rest"}, 404, nil},
	}
	for _, s := range steps {
		ok := t.Run(s.name, func(t *testing.T) {
			resp, body := do(t, base, s.call)
			if resp.StatusCode != s.status {
				t.Fatalf("%s %s: status %d, want %d; body %s", s.call.method, s.call.path, resp.StatusCode, s.status, body)
			}
			if s.check != nil {
				s.check(t, resp, body)
			}
		})
		if !ok && s.status == 200 {
			t.FailNow() // later steps depend on this one
		}
	}
	_ = pendingID
}

func TestPendingConnectionLifecycle(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	base := c.MasterURLs[0]
	do(t, base, call{method: "POST", path: "/openvidu/api/sessions", body: `{"customSessionId":"life"}`})
	_, body := do(t, base, call{method: "POST", path: "/openvidu/api/sessions/life/connection", body: `{}`})
	var conn protocol.Connection
	if err := json.Unmarshal(body, &conn); err != nil {
		t.Fatal(err)
	}
	path := "/openvidu/api/sessions/life/connection/" + conn.ConnectionID
	resp, body := do(t, base, call{method: "PATCH", path: path, body: `{"role":"MODERATOR","record":false}`})
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"role":"MODERATOR"`) || !strings.Contains(string(body), `"record":false`) {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, base, call{method: "PATCH", path: path, body: `{}`}); resp.StatusCode != 200 {
		t.Errorf("PATCH without change: %d", resp.StatusCode)
	}
	if resp, _ := do(t, base, call{method: "PATCH", path: path, body: `{"record":"WRONG"}`}); resp.StatusCode != 400 {
		t.Errorf("PATCH with a bad record: %d", resp.StatusCode)
	}
	if resp, _ := do(t, base, call{method: "DELETE", path: path}); resp.StatusCode != 204 {
		t.Errorf("DELETE pending connection: %d", resp.StatusCode)
	}
	if resp, _ := do(t, base, call{method: "GET", path: path}); resp.StatusCode != 404 {
		t.Errorf("GET revoked connection: %d", resp.StatusCode)
	}
}

func TestGarbageCollection(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1, Configure: func(cfg *config.Config) {
		cfg.Master.SessionsGarbageInterval = 300 * time.Millisecond
		cfg.Master.SessionsGarbageThreshold = time.Second
	}})
	base := c.MasterURLs[0]
	do(t, base, call{method: "POST", path: "/openvidu/api/sessions", body: `{"customSessionId":"unused"}`})
	do(t, base, call{method: "POST", path: "/openvidu/api/sessions/unused/connection", body: `{}`})
	if resp, _ := do(t, base, call{method: "GET", path: "/openvidu/api/sessions/unused"}); resp.StatusCode != 200 {
		t.Fatalf("session gone before the threshold: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := do(t, base, call{method: "GET", path: "/openvidu/api/sessions/unused"})
		if resp.StatusCode == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unused session was never collected")
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.AssertNoLeftovers(t)
}
