package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/chorus-rtc/chorus/shared/credential"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// The Inspector: the cluster's web console (OpenVidu Inspector's job), a
// static page (web/inspector, with uPlot for its charts) served at
// /inspector. An operator logs in with the OpenVidu secret; the proxy then
// holds a login in Redis and gives the page an HttpOnly, SameSite=Strict
// cookie naming it, so the secret never stays in the page, its URLs or its
// storage. Behind the cookie the page reaches:
//
//	GET  /inspector/cluster       the masters: registered ones with the proxy's view of their health
//	ANY  /inspector/api/{path...} the REST API (/openvidu/api/{path...}) with the secret added
//	GET  /inspector/events        the cluster's events as server-sent events, live (the event bus' tail)
//
// Requests that change something must carry X-Chorus-Inspector: 1, which a
// page of another origin cannot send without the proxy's CORS consent
// (never given): with SameSite=Strict, a second guard against cross-site
// requests.

// inspectorCookie names the login cookie.
const inspectorCookie = "chorus_inspector"

// inspectorHeader must be present on the Inspector's non-GET requests.
const inspectorHeader = "X-Chorus-Inspector"

// inspectorLoginsPerMinute bounds the login attempts of a client IP (and a
// burst of 5): the secret cannot be guessed through the Inspector faster
// than through the REST API.
const inspectorLoginsPerMinute = 10

// inspector serves the Inspector for a proxy.
type inspector struct {
	p       *Proxy
	logins  *store.InspectorLogins
	secret  credential.Secret
	ttl     time.Duration
	secure  bool // cookies marked Secure (the proxy serves HTTPS)
	limiter *rateLimiter
	feed    *eventFeed
	log     *slog.Logger
}

func (i *inspector) register(mux *http.ServeMux, assets string) {
	dir := filepath.Join(assets, "inspector")
	mux.HandleFunc("GET /inspector", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/inspector/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /inspector/{$}", func(w http.ResponseWriter, r *http.Request) {
		noStore(w)
		http.ServeFile(w, r, filepath.Join(dir, "index.html"))
	})
	mux.Handle("GET /inspector/static/", http.StripPrefix("/inspector/static/", http.FileServer(http.Dir(dir))))
	uplot := filepath.Join(assets, "node_modules", "uplot", "dist")
	mux.HandleFunc("GET /inspector/uplot/{file}", func(w http.ResponseWriter, r *http.Request) {
		switch f := r.PathValue("file"); f {
		case "uPlot.iife.min.js", "uPlot.min.css":
			http.ServeFile(w, r, filepath.Join(uplot, f))
		default:
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("POST /inspector/login", i.login)
	mux.HandleFunc("POST /inspector/logout", i.logout)
	mux.Handle("GET /inspector/cluster", i.authenticated(http.HandlerFunc(i.cluster)))
	mux.Handle("GET /inspector/events", i.authenticated(http.HandlerFunc(i.events)))
	mux.Handle("/inspector/api/", i.authenticated(http.HandlerFunc(i.api)))
}

// noStore keeps what the Inspector serves out of caches.
func noStore(w http.ResponseWriter) { w.Header().Set("Cache-Control", "no-store") }

func inspectorAnswer(w http.ResponseWriter, status int, message string) {
	noStore(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "error": message})
}

// tokenHash is how a login is known in Redis: the token is never stored.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// login checks {"secret": ...} and sets the login cookie: 204, 400 for a
// malformed body, 401 for a wrong secret, 429 (Retry-After) past the
// client's rate, 503 when Redis cannot record the login.
func (i *inspector) login(w http.ResponseWriter, r *http.Request) {
	if ok, wait := i.limiter.allow(clientKey(i.p.clientAddr(r))); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait/time.Second)+1))
		inspectorAnswer(w, http.StatusTooManyRequests, "too many login attempts from this address: try again later")
		return
	}
	var in struct {
		Secret string `json:"secret"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil {
		inspectorAnswer(w, http.StatusBadRequest, `the body must be {"secret": "<the OpenVidu secret>"}`)
		return
	}
	if !i.secret.Matches(in.Secret) {
		i.log.Info("Inspector login refused", "client", i.p.clientAddr(r))
		inspectorAnswer(w, http.StatusUnauthorized, "wrong secret")
		return
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	token := base64.RawURLEncoding.EncodeToString(raw)
	if err := i.logins.Create(r.Context(), tokenHash(token), i.ttl); err != nil {
		i.log.Warn("Inspector login", "err", err)
		inspectorAnswer(w, http.StatusServiceUnavailable, "the login could not be recorded: try again later")
		return
	}
	i.log.Info("Inspector login", "client", i.p.clientAddr(r))
	http.SetCookie(w, &http.Cookie{Name: inspectorCookie, Value: token, Path: "/inspector", MaxAge: int(i.ttl / time.Second),
		HttpOnly: true, Secure: i.secure, SameSite: http.SameSiteStrictMode})
	noStore(w)
	w.WriteHeader(http.StatusNoContent)
}

// logout ends the login, if any, and clears the cookie: 204.
func (i *inspector) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(inspectorCookie); err == nil && c.Value != "" {
		if err := i.logins.Delete(r.Context(), tokenHash(c.Value)); err != nil {
			i.log.Warn("Inspector logout", "err", err)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: inspectorCookie, Value: "", Path: "/inspector", MaxAge: -1,
		HttpOnly: true, Secure: i.secure, SameSite: http.SameSiteStrictMode})
	noStore(w)
	w.WriteHeader(http.StatusNoContent)
}

// authenticated lets through requests with a current login: 401 without
// one, 403 for a change without X-Chorus-Inspector, 503 when Redis does
// not answer.
func (i *inspector) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(inspectorCookie)
		if err != nil || c.Value == "" {
			inspectorAnswer(w, http.StatusUnauthorized, "log in first")
			return
		}
		ok, err := i.logins.Valid(r.Context(), tokenHash(c.Value))
		if err != nil {
			inspectorAnswer(w, http.StatusServiceUnavailable, "logins cannot be checked: try again later")
			return
		}
		if !ok {
			inspectorAnswer(w, http.StatusUnauthorized, "the login expired or ended: log in again")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get(inspectorHeader) != "1" {
			inspectorAnswer(w, http.StatusForbidden, "changes need the "+inspectorHeader+" header")
			return
		}
		noStore(w)
		next.ServeHTTP(w, r)
	})
}

// api forwards /inspector/api/{path...} to the masters' REST API
// (/openvidu/api/{path...}) with the secret as Basic credentials, through
// the proxy's own balancing and retries. The cookie stays here.
func (i *inspector) api(w http.ResponseWriter, r *http.Request) {
	target := path.Clean("/openvidu/api/" + strings.TrimPrefix(r.URL.Path, "/inspector/api/"))
	if !strings.HasPrefix(target, "/openvidu/api/") {
		inspectorAnswer(w, http.StatusNotFound, "not an API path")
		return
	}
	out := r.Clone(r.Context())
	out.URL.Path = target
	out.URL.RawPath = ""
	out.RequestURI = ""
	out.Header.Del("Cookie")
	out.Header.Del(inspectorHeader)
	out.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("OPENVIDUAPP:"+i.p.secret)))
	i.p.rp.ServeHTTP(w, out)
}

// InspectorMaster is a master as /inspector/cluster lists it.
type InspectorMaster struct {
	// ID is the master's incarnation (master_1.2): a restarted master is
	// a new incarnation.
	ID        protocol.MasterID `json:"id"`
	Master    string            `json:"master"` // the node id, master_1
	StartedAt int64             `json:"startedAt"`
	// Status is UP (registered, passing the proxy's health checks),
	// DRAINING, or DOWN (registered but failing them, or its
	// registration lapsed: crashed, not yet cleaned up).
	Status string `json:"status"`
}

// cluster answers {"masters": [...]}: 503 when Redis does not answer.
func (i *inspector) cluster(w http.ResponseWriter, r *http.Request) {
	alive, dead, err := i.p.store.Masters(r.Context())
	if err != nil {
		inspectorAnswer(w, http.StatusServiceUnavailable, "the masters' registry cannot be read: try again later")
		return
	}
	healthy := map[string]bool{}
	i.p.mu.RLock()
	for _, b := range i.p.backends {
		healthy[b.id] = b.healthy.Load()
	}
	i.p.mu.RUnlock()
	masters := []InspectorMaster{}
	for _, m := range alive {
		status := "UP"
		switch {
		case m.Draining:
			status = "DRAINING"
		case !healthy[string(m.ID)]:
			status = "DOWN"
		}
		masters = append(masters, InspectorMaster{ID: m.ID, Master: nodeOf(m.ID), StartedAt: m.StartedAt, Status: status})
	}
	for _, id := range dead {
		masters = append(masters, InspectorMaster{ID: id, Master: nodeOf(id), Status: "DOWN"})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"masters": masters, "now": time.Now().UnixMilli()})
}

// nodeOf is the node id of a master incarnation (master_1.2 -> master_1).
func nodeOf(id protocol.MasterID) string {
	node, _, _ := strings.Cut(string(id), ".")
	return node
}

// events streams the cluster's events as server-sent events ("event:
// <name>", "data: <the event's JSON>"), from the moment the page connects,
// with a comment every 15 s so that idle connections stay open. It ends
// when the client leaves or the proxy stops.
func (i *inspector) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		inspectorAnswer(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	sub, unsubscribe := i.feed.subscribe()
	if sub == nil {
		inspectorAnswer(w, http.StatusServiceUnavailable, "the proxy is stopping")
		return
	}
	defer unsubscribe()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, ": chorus events\n\n")
	flusher.Flush()
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepAlive.C:
			_, _ = io.WriteString(w, ": keep-alive\n\n")
		case e, ok := <-sub:
			if !ok {
				return
			}
			name := strings.Map(func(r rune) rune {
				if r == '\n' || r == '\r' {
					return -1
				}
				return r
			}, e.Name)
			data := strings.ReplaceAll(string(e.Body), "\n", "")
			_, _ = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data)
		}
		flusher.Flush()
	}
}

// eventFeed fans the event bus' live tail out to the Inspector pages: one
// Redis subscription per proxy whatever the number of pages. A page that
// does not keep up loses events (the tail is a live view; the bus holds
// the durable copy), it never slows the others.
type eventFeed struct {
	bus *store.EventBus

	mu      sync.Mutex
	subs    map[chan store.StoredEvent]struct{}
	stopped bool
}

func newEventFeed(bus *store.EventBus) *eventFeed {
	return &eventFeed{bus: bus, subs: map[chan store.StoredEvent]struct{}{}}
}

// subscribe returns a channel of events and its cancel; nil once the feed
// stopped.
func (f *eventFeed) subscribe() (<-chan store.StoredEvent, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil, func() {}
	}
	ch := make(chan store.StoredEvent, 256)
	f.subs[ch] = struct{}{}
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[ch]; ok {
			delete(f.subs, ch)
			close(ch)
		}
	}
}

// Run follows the tail until ctx ends, then closes every subscriber's
// channel (their streams end).
func (f *eventFeed) Run(ctx context.Context) error {
	defer func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.stopped = true
		for ch := range f.subs {
			delete(f.subs, ch)
			close(ch)
		}
	}()
	for ctx.Err() == nil {
		tail := f.bus.SubscribeTail(ctx)
		for e := range tail {
			f.mu.Lock()
			for ch := range f.subs {
				select {
				case ch <- e:
				default:
				}
			}
			f.mu.Unlock()
		}
		// The subscription ended (Redis away): subscribe again shortly.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}
