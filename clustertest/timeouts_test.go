package clustertest_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/openvidu"
	"github.com/chorus-rtc/chorus/shared/config"
)

// serverTimeouts are short versions of the http.* settings for the tests.
func serverTimeouts(cfg *config.Config) {
	cfg.HTTP.ReadHeaderTimeout = 500 * time.Millisecond
	cfg.HTTP.ReadTimeout = time.Second
	cfg.HTTP.IdleTimeout = time.Second
}

// closedAfter reads conn until the server closes it (EOF or reset) or max
// passes; it returns how long that took, or max and false.
func closedAfter(conn net.Conn, r io.Reader, max time.Duration) (time.Duration, bool) {
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(max))
	buf := make([]byte, 4096)
	for {
		if _, err := r.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return max, false
			}
			return time.Since(start), true
		}
	}
}

// TestServerTimeouts: the proxy, a master and a media node close a
// keep-alive connection idle for http.idle_timeout, and one whose request
// body trickles in for longer than http.read_timeout; a WebSocket through
// the proxy outlives both.
func TestServerTimeouts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1, Proxy: true, Configure: serverTimeouts})
	servers := map[string]string{"proxy": c.ProxyURL, "master": c.MasterURLs[0], "media node": c.MediaNodeURLs[0]}

	for name, base := range servers {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name+" idle", func(t *testing.T) {
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := fmt.Fprintf(conn, "GET /chorus/health HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Close {
				t.Fatalf("the server closed the connection after one request")
			}
			took, closed := closedAfter(conn, br, 5*time.Second)
			if !closed || took < 800*time.Millisecond || took > 3*time.Second {
				t.Errorf("idle keep-alive connection closed=%v after %s, want closed after about 1s", closed, took)
			}
		})
		t.Run(name+" slow body", func(t *testing.T) {
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			auth := base64.StdEncoding.EncodeToString([]byte("OPENVIDUAPP:" + clustertest.Secret))
			if _, err := fmt.Fprintf(conn, "POST /openvidu/api/sessions HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n"+
				"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", u.Host, auth); err != nil {
				t.Fatal(err)
			}
			// One byte every 100 ms: the body would take 100 s.
			stop := make(chan struct{})
			trickled := make(chan struct{})
			go func() {
				defer close(trickled)
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}()
			took, closed := closedAfter(conn, conn, 6*time.Second)
			close(stop)
			<-trickled
			if !closed || took > 3*time.Second {
				t.Errorf("trickled body: connection closed=%v after %s, want closed within 3s", closed, took)
			}
		})
	}

	// A participant's WebSocket through the proxy lives past both timeouts.
	ov, err := openvidu.New(openvidu.Config{URL: c.ProxyURL, Secret: clustertest.Secret})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ov.CreateSession(ctx, openvidu.SessionProperties{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ov.CreateConnection(ctx, sess.ID, openvidu.ConnectionProperties{Role: "PUBLISHER"})
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.Dial(ctx, strings.Replace(c.ProxyURL, "http", "ws", 1)+"/openvidu?sessionId="+sess.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	call := func(id int, method, params string) string {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params))); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		for {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			if strings.Contains(string(msg), fmt.Sprintf(`"id":%d,`, id)) || strings.Contains(string(msg), fmt.Sprintf(`"id":%d}`, id)) {
				return string(msg)
			}
		}
	}
	if resp := call(1, "joinRoom", fmt.Sprintf(`{"token":%q,"session":%q,"platform":"go","metadata":""}`, conn.Token, sess.ID)); !strings.Contains(resp, `"result"`) {
		t.Fatalf("joinRoom: %s", resp)
	}
	time.Sleep(2500 * time.Millisecond)
	if resp := call(2, "ping", `{"interval":5000}`); !strings.Contains(resp, "pong") {
		t.Errorf("ping after 2.5s (read and idle timeouts 1s): %s", resp)
	}
	if resp := call(3, "leaveRoom", `{}`); !strings.Contains(resp, `"result"`) {
		t.Errorf("leaveRoom: %s", resp)
	}
}
