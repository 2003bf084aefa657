package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The demo: a conference page (web/demo) using openvidu-browser from npm
// (web/node_modules, installed by `make web`), and a tiny application backend
// that, like any OpenVidu application server, creates the session and a
// connection through the REST API and hands the token to the page.
//
// Its token endpoint hands PUBLISHER tokens to anyone who reaches the proxy,
// so it is off unless enabled (chorus dev enables it), serves only the
// sessions of its own namespace (DemoSessionPrefix), and answers each
// client IP at most proxy.demo.rate_limit times a minute.

// DemoSessionPrefix starts the id of every session the demo creates and of
// the only sessions its token endpoint serves: applications must not give
// their sessions ids starting with it.
const DemoSessionPrefix = "demo_"

var demoSessionPattern = regexp.MustCompile(`^` + DemoSessionPrefix + `[a-zA-Z0-9_-]{1,64}$`)

func (p *Proxy) registerDemo(mux *http.ServeMux) {
	dir := p.cfg.Demo.AssetsDir
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "demo", "index.html"))
	})
	mux.Handle("GET /demo/", http.StripPrefix("/demo/", http.FileServer(http.Dir(filepath.Join(dir, "demo")))))
	mux.HandleFunc("GET /openvidu-browser.js", func(w http.ResponseWriter, r *http.Request) {
		matches, _ := filepath.Glob(filepath.Join(dir, "node_modules", "openvidu-browser", "static", "js", "openvidu-browser-*.min.js"))
		if len(matches) == 0 {
			http.Error(w, "openvidu-browser is not installed: run `make web`", http.StatusNotFound)
			return
		}
		sort.Strings(matches)
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, matches[len(matches)-1])
	})
	mux.HandleFunc("POST /demo/token", p.demoToken)
}

// demoToken answers {"token": ...} for {"sessionId": "demo_..."}: it creates
// the session if needed (409 means it exists) and a publisher connection.
// It answers 429 (with Retry-After, in seconds) past the client's rate, 400
// for a malformed body and 403 for a session outside its namespace.
func (p *Proxy) demoToken(w http.ResponseWriter, r *http.Request) {
	if ok, wait := p.demoLimiter.allow(clientKey(p.clientAddr(r))); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		demoAnswer(w, http.StatusTooManyRequests, "too many token requests from this address: try again later")
		return
	}
	var in struct {
		SessionID string `json:"sessionId"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil {
		demoAnswer(w, http.StatusBadRequest, "the body must be {\"sessionId\": \""+DemoSessionPrefix+"<name>\"}")
		return
	}
	if !strings.HasPrefix(in.SessionID, DemoSessionPrefix) {
		demoAnswer(w, http.StatusForbidden, "the demo serves only its own sessions, whose ids start with "+DemoSessionPrefix)
		return
	}
	if !demoSessionPattern.MatchString(in.SessionID) {
		demoAnswer(w, http.StatusBadRequest, "sessionId must be "+DemoSessionPrefix+" and 1 to 64 of [a-zA-Z0-9_-]")
		return
	}
	client := &http.Client{Transport: roundTripperFunc(p.roundTrip)}
	call := func(method, path string, body any) (int, []byte, error) {
		raw, _ := json.Marshal(body)
		req, err := http.NewRequestWithContext(r.Context(), method, "http://master"+path, bytes.NewReader(raw))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("OPENVIDUAPP:"+p.secret)))
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, out, err
	}
	status, _, err := call(http.MethodPost, "/openvidu/api/sessions", map[string]string{"customSessionId": in.SessionID})
	if err == nil && status != http.StatusOK && status != http.StatusConflict {
		err = fmt.Errorf("create session: status %d", status)
	}
	if err != nil {
		p.demoError(w, err)
		return
	}
	status, raw, err := call(http.MethodPost, "/openvidu/api/sessions/"+url.PathEscape(in.SessionID)+"/connection", map[string]string{"role": "PUBLISHER"})
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("create connection: status %d", status)
	}
	if err != nil {
		p.demoError(w, err)
		return
	}
	var conn struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &conn); err != nil {
		p.demoError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": conn.Token})
}

func (p *Proxy) demoError(w http.ResponseWriter, err error) {
	p.log.Warn("demo token", "err", err)
	demoAnswer(w, http.StatusBadGateway, "the cluster could not make a token: try again later")
}

// demoAnswer writes {"error": message} with status.
func demoAnswer(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": message})
}
