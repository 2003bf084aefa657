package clustertest_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/shared/config"
)

// TestInspectorAccess: the Inspector's page and uPlot are served to
// anyone; everything else needs a login made with the OpenVidu secret:
// wrong secrets are refused (and rate-limited), the login is an HttpOnly,
// SameSite=Strict cookie scoped to /inspector; behind it the REST API
// answers with the secret added (changes only with X-Chorus-Inspector),
// the cluster's events stream live, and logging out ends the login.
func TestInspectorAccess(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Masters: 2, MediaNodes: 1, Proxy: true, Configure: func(cfg *config.Config) {
		cfg.Proxy.Demo.AssetsDir = filepath.Join("..", "web")
		cfg.HTTP.ReadTimeout = 2 * time.Second // the event stream must outlive it
	}})
	base := c.ProxyURL + "/inspector"
	do := func(client *http.Client, method, path, body string, header ...string) (int, string, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw), resp
	}
	anonymous := &http.Client{}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", http.StatusOK},
		{"GET", "/static/inspector.js", http.StatusOK},
		{"GET", "/uplot/uPlot.iife.min.js", http.StatusOK},
		{"GET", "/uplot/package.json", http.StatusNotFound},
		{"GET", "/cluster", http.StatusUnauthorized},
		{"GET", "/events", http.StatusUnauthorized},
		{"GET", "/api/sessions", http.StatusUnauthorized},
		{"POST", "/api/sessions", http.StatusUnauthorized},
	} {
		if got, body, _ := do(anonymous, tc.method, tc.path, ""); got != tc.want {
			t.Errorf("%s %s without a login: %d, want %d (%.100s)", tc.method, tc.path, got, tc.want, body)
		}
	}

	jar, _ := cookiejar.New(nil)
	operator := &http.Client{Jar: jar}
	if got, _, _ := do(operator, "POST", "/login", `{"secret":"wrong"}`); got != http.StatusUnauthorized {
		t.Errorf("a wrong secret: %d, want 401", got)
	}
	if got, _, _ := do(operator, "POST", "/login", `not json`); got != http.StatusBadRequest {
		t.Errorf("a malformed login: %d, want 400", got)
	}
	got, _, resp := do(operator, "POST", "/login", `{"secret":"`+clustertest.Secret+`"}`)
	if got != http.StatusNoContent {
		t.Fatalf("the secret: %d, want 204", got)
	}
	cookie := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{"chorus_inspector=", "Path=/inspector", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("login cookie %q lacks %s", cookie, attr)
		}
	}
	if strings.Contains(cookie, clustertest.Secret) {
		t.Errorf("the login cookie holds the secret: %q", cookie)
	}

	for _, tc := range []struct {
		name, method, path, body string
		header                   []string
		want                     int
	}{
		{"cluster", "GET", "/cluster", "", nil, http.StatusOK},
		{"REST read", "GET", "/api/media-nodes", "", nil, http.StatusOK},
		{"REST change without the header", "POST", "/api/sessions", `{"customSessionId":"insp_a"}`, nil, http.StatusForbidden},
		{"REST change with the header", "POST", "/api/sessions", `{"customSessionId":"insp_a"}`, []string{"X-Chorus-Inspector", "1"}, http.StatusOK},
		{"REST error passed on", "GET", "/api/sessions/no_such_session", "", nil, http.StatusNotFound},
		{"outside the API", "GET", "/api/a%2F..%2F..%2F..%2Finternal/v1/health", "", nil, http.StatusNotFound},
	} {
		if got, body, _ := do(operator, tc.method, tc.path, tc.body, tc.header...); got != tc.want {
			t.Errorf("%s: %s %s: %d, want %d (%.200s)", tc.name, tc.method, tc.path, got, tc.want, body)
		}
	}
	if _, body, _ := do(operator, "GET", "/cluster", ""); strings.Count(body, `"status":"UP"`) != 2 {
		t.Errorf("/inspector/cluster: %s, want 2 masters UP", body)
	}

	// The live feed: closing the session emits sessionDestroyed.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	feed, err := operator.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Body.Close()
	if ct := feed.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events: %d %s", feed.StatusCode, ct)
	}
	lines := bufio.NewScanner(feed.Body)
	lines.Scan()                // the opening comment: the subscription is in place
	time.Sleep(3 * time.Second) // past http.read_timeout
	if got, _, _ := do(operator, "DELETE", "/api/sessions/insp_a", "", "X-Chorus-Inspector", "1"); got != http.StatusNoContent {
		t.Fatalf("close the session through the Inspector: %d", got)
	}
	var event, data string
	for lines.Scan() && data == "" {
		line := lines.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok && event == "sessionDestroyed" {
			data = v
		}
	}
	if !strings.Contains(data, `"sessionId":"insp_a"`) {
		t.Errorf("the feed did not carry the session's sessionDestroyed (last event %q, data %q, err %v)", event, data, lines.Err())
	}

	if got, _, _ := do(operator, "POST", "/logout", "", "X-Chorus-Inspector", "1"); got != http.StatusNoContent {
		t.Errorf("logout: %d, want 204", got)
	}
	if got, _, _ := do(operator, "GET", "/cluster", ""); got != http.StatusUnauthorized {
		t.Errorf("after logging out: %d, want 401", got)
	}
	// The cookie of the ended login is refused too, replayed by hand.
	raw := strings.Split(strings.TrimPrefix(cookie, "chorus_inspector="), ";")[0]
	if got, _, _ := do(anonymous, "GET", "/cluster", "", "Cookie", "chorus_inspector="+raw); got != http.StatusUnauthorized {
		t.Errorf("an ended login's cookie: %d, want 401", got)
	}
	if keys := c.Keys(t); strings.Contains(strings.Join(keys, " "), ":inspector:") {
		t.Errorf("a login's key outlived the logout: %v", keys)
	}

	// Guessing: 5 attempts at once, then 10 a minute.
	limited := false
	for range 8 {
		if got, _, _ := do(anonymous, "POST", "/login", `{"secret":"guess"}`); got == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("8 wrong secrets in a row were never answered 429")
	}
}
