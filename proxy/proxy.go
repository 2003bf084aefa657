// Package proxy is Chorus's public entry point (`chorus proxy`): a reverse
// proxy balancing HTTP and WebSocket traffic over the healthy masters. It
// checks masters actively (sub-second) and passively, retries on another
// master a request that could not even be connected, gives up what waits on
// a master whose host is lost (ARCHITECTURE.md, "Docker Swarm"), and otherwise answers
// 503 (no healthy master), 502 (the master failed mid-request) or 504 (it
// timed out), so that clients retry. It also serves the demo page.
package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/clientip"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/credential"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
	"github.com/chorus-rtc/chorus/shared/tlscert"
)

// maxBufferedBody is the largest request body the proxy buffers so that it
// can retry the request on another master.
const maxBufferedBody = 1 << 20

var errNoHealthyMaster = errors.New("no healthy master")

// Config configures a proxy.
type Config struct {
	Cluster *config.Config
	// Redis discovers masters when Cluster.Proxy.Masters is empty.
	Redis  redis.UniversalClient
	Logger *slog.Logger
}

// masterDirectory is where the proxy discovers masters: their live
// registrations in Redis.
type masterDirectory interface {
	Masters(ctx context.Context) (alive []store.MasterInfo, dead []protocol.MasterID, err error)
}

// Proxy is a running proxy.
type Proxy struct {
	cfg    config.Proxy
	http   config.HTTP
	secret string
	log    *slog.Logger
	store  masterDirectory

	transport   *http.Transport
	rp          *httputil.ReverseProxy
	checker     *http.Client
	demoLimiter *rateLimiter // per client IP, for the demo's token endpoint
	trusted     clientip.Trusted
	wsLimiter   *connLimiter // WebSocket connections per client IP
	inspector   *inspector   // nil: the Inspector is off

	mu       sync.RWMutex
	backends map[string]*backend // by URL
	next     atomic.Uint64
	stats    Stats
	metrics  *metrics
}

// Stats counts what the proxy did with requests it could not complete.
type Stats struct {
	// ClientCancelled counts requests whose client went away before the
	// master answered (not held against the master).
	ClientCancelled atomic.Uint64
	// UpstreamFailures counts requests a master failed after receiving
	// them (counted towards marking it unhealthy).
	UpstreamFailures atomic.Uint64
	// ConnectRetries counts requests retried on another master because the
	// first could not be connected to.
	ConnectRetries atomic.Uint64
	// Abandoned counts requests and WebSockets given up because their
	// master was found unreachable while they waited on it (the GETs
	// among them retried on another master).
	Abandoned atomic.Uint64
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() *Stats { return &p.stats }

// backend is one master as the proxy sees it.
type backend struct {
	id      string
	url     *url.URL
	healthy atomic.Bool
	fails   atomic.Int32

	mu      sync.Mutex
	pending map[*waiter]struct{} // requests awaiting its answer
	tunnels map[*tunnel]struct{} // upgraded connections (WebSockets) to it
}

// waiter is a request awaiting a master's answer, cancelled if the master
// is found unreachable meanwhile.
type waiter struct{ cancel context.CancelCauseFunc }

// errMasterUnreachable cancels what waits on a master found unreachable
// (its host gone: no TCP handshake completes); such a request failed, and
// answers 502 unless it can be retried.
var errMasterUnreachable = errors.New("master unreachable")

// await registers a request waiting for the master's answer; the returned
// func unregisters it.
func (b *backend) await(cancel context.CancelCauseFunc) (done func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending == nil {
		b.pending = map[*waiter]struct{}{}
	}
	w := &waiter{cancel: cancel}
	b.pending[w] = struct{}{}
	return func() {
		b.mu.Lock()
		delete(b.pending, w)
		b.mu.Unlock()
	}
}

// tunnel is the master's side of an upgraded connection the proxy relays.
type tunnel struct {
	io.ReadWriteCloser
	b *backend
}

func (t *tunnel) Close() error {
	t.b.mu.Lock()
	delete(t.b.tunnels, t)
	t.b.mu.Unlock()
	return t.ReadWriteCloser.Close()
}

// dig registers an upgraded connection to the master.
func (b *backend) dig(conn io.ReadWriteCloser) *tunnel {
	t := &tunnel{ReadWriteCloser: conn, b: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tunnels == nil {
		b.tunnels = map[*tunnel]struct{}{}
	}
	b.tunnels[t] = struct{}{}
	return t
}

// abandon gives up on everything that waits on the master: its pending
// requests are cancelled and its tunnels closed, so that clients learn at
// once what they would otherwise learn from their own timeouts (a lost
// host sends no reset: a request hangs until the SDK's attempt timeout, a
// WebSocket until openvidu-browser's ping fails). It returns how many.
func (b *backend) abandon() (requests, tunnels int) {
	b.mu.Lock()
	pending, open := b.pending, b.tunnels
	b.pending, b.tunnels = nil, nil
	b.mu.Unlock()
	for w := range pending {
		w.cancel(errMasterUnreachable)
	}
	for t := range open {
		_ = t.ReadWriteCloser.Close()
	}
	return len(pending), len(open)
}

// New builds a proxy; Run serves it. It fails on a secret unfit for where the
// proxy listens (config.ErrUnsafeSecrets: see Config.CheckSecrets) and on a
// master URL that does not parse.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Cluster.CheckSecrets(config.RoleProxy); err != nil {
		return nil, err
	}
	var err error
	p := &Proxy{
		cfg: cfg.Cluster.Proxy, http: cfg.Cluster.HTTP, secret: cfg.Cluster.Secret, log: cfg.Logger, backends: map[string]*backend{},
		transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: cfg.Cluster.Proxy.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: cfg.Cluster.Proxy.RequestTimeout,
			MaxIdleConnsPerHost:   64,
			// Below the masters' http.idle_timeout: a connection the
			// master is about to close is never reused (a request sent
			// on it would fail, and a POST is not retried).
			IdleConnTimeout: cfg.Cluster.HTTP.IdleTimeout / 2,
		},
		checker: &http.Client{Timeout: cfg.Cluster.Proxy.HealthTimeout, Transport: &http.Transport{
			DialContext: (&net.Dialer{Timeout: cfg.Cluster.Proxy.DialTimeout}).DialContext, MaxIdleConnsPerHost: 2,
			IdleConnTimeout: cfg.Cluster.HTTP.IdleTimeout / 2,
		}},
		demoLimiter: newRateLimiter(cfg.Cluster.Proxy.Demo.RateLimit, cfg.Cluster.Proxy.Demo.RateBurst, time.Now),
		wsLimiter:   newConnLimiter(cfg.Cluster.Limits.WebSocketsPerIP),
	}
	p.metrics = newMetrics(p)
	if p.trusted, err = clientip.ParseTrusted(cfg.Cluster.Proxy.TrustedProxies); err != nil {
		return nil, fmt.Errorf("proxy: proxy.trusted_proxies: %w", err)
	}
	if cfg.Redis != nil {
		p.store = store.NewMasterRegistry(store.Config{Redis: cfg.Redis, ClusterID: cfg.Cluster.ClusterID})
	}
	if len(p.cfg.Masters) == 0 && p.store == nil {
		return nil, errors.New("proxy: no static masters and no Redis to discover them")
	}
	if ic := p.cfg.Inspector; ic.Enabled {
		switch {
		case cfg.Redis == nil:
			p.log.Warn("the Inspector needs Redis (its logins and the event feed): off")
		case p.cfg.Demo.AssetsDir == "":
			p.log.Warn("the Inspector needs proxy.demo.assets_dir (its page): off")
		default:
			scfg := store.Config{Redis: cfg.Redis, ClusterID: cfg.Cluster.ClusterID}
			p.inspector = &inspector{p: p, logins: store.NewInspectorLogins(scfg), secret: credential.New(cfg.Cluster.Secret),
				ttl: ic.LoginTTL, secure: p.cfg.TLS.Mode != "off", limiter: newRateLimiter(inspectorLoginsPerMinute, 5, time.Now),
				feed: newEventFeed(store.NewEventBus(scfg)), log: p.log}
		}
	}
	for _, raw := range p.cfg.Masters {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("proxy: master URL %q: %w", raw, err)
		}
		p.backends[u.String()] = &backend{id: u.Host, url: u}
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p.forwardedHeaders(pr)
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "master" // the transport picks the master
			pr.Out.Host = pr.In.Host
		},
		Transport:     roundTripperFunc(p.roundTrip),
		ErrorHandler:  p.errorHandler,
		FlushInterval: -1,
	}
	return p, nil
}

// forwardedHeaders sets X-Forwarded-For, -Host and -Proto on the request to
// the master. From a trusted proxy (proxy.trusted_proxies) the incoming
// X-Forwarded-For chain is kept and the peer appended, and its -Host and
// -Proto are kept (it terminated the client's connection); from anyone else
// they are replaced by the peer's address and this request's own host and
// scheme, so that a client cannot choose what masters report.
func (p *Proxy) forwardedHeaders(pr *httputil.ProxyRequest) {
	trusted := p.trusted.Contains(clientip.Peer(pr.In))
	if trusted {
		// Rewrite starts without the incoming X-Forwarded-* headers;
		// SetXForwarded appends the peer to the chain found on Out.
		if chain := clientip.ForwardedFor(pr.In); len(chain) > 0 {
			pr.Out.Header.Set("X-Forwarded-For", strings.Join(chain, ", "))
		}
	}
	pr.SetXForwarded()
	if trusted {
		for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := pr.In.Header.Get(h); v != "" {
				pr.Out.Header.Set(h, v)
			}
		}
	}
}

// clientAddr is the address of the client behind r: its peer, or from a
// trusted proxy the last untrusted X-Forwarded-For entry.
func (p *Proxy) clientAddr(r *http.Request) string {
	return p.trusted.Client(clientip.Hops(r))
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// roundTrip sends the request to a healthy master; when the master cannot
// even be connected to, nothing reached it, so the request is tried on the
// next healthy one.
func (p *Proxy) roundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(io.LimitReader(req.Body, maxBufferedBody+1))
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		if len(body) > maxBufferedBody {
			return nil, errBodyTooLarge
		}
	}
	tried := map[*backend]bool{}
	for {
		b := p.pick(tried)
		if b == nil {
			return nil, errNoHealthyMaster
		}
		tried[b] = true
		// Not cancelled once the answer has come: the context would
		// end the response body and an upgraded connection with it.
		ctx, cancel := context.WithCancelCause(req.Context())
		out := req.Clone(ctx)
		out.URL.Scheme, out.URL.Host = b.url.Scheme, b.url.Host
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.ContentLength = int64(len(body))
		}
		done := b.await(cancel)
		resp, err := p.transport.RoundTrip(out)
		done()
		if err == nil {
			if conn, ok := resp.Body.(io.ReadWriteCloser); ok && resp.StatusCode == http.StatusSwitchingProtocols {
				resp.Body = b.dig(conn)
			}
			return resp, nil
		}
		if isConnectError(err) {
			p.log.Info("master unreachable, trying another", "master", b.url.Host, "err", err)
			p.markUnreachable(b)
			p.stats.ConnectRetries.Add(1)
			continue
		}
		if errors.Is(context.Cause(ctx), errMasterUnreachable) && req.Context().Err() == nil {
			if idempotent(req) {
				continue // safe to send again (RFC 9110, 9.2.2)
			}
			return nil, fmt.Errorf("%w: %w", errMasterUnreachable, err)
		}
		if req.Context().Err() == nil {
			p.stats.UpstreamFailures.Add(1)
			p.recordFailure(b)
		} else {
			// A client that gave up says nothing about the master.
			p.stats.ClientCancelled.Add(1)
		}
		return nil, err
	}
}

var errBodyTooLarge = errors.New("request body too large")

// idempotent reports whether req may be sent again after its master was
// lost with it (RFC 9110, 9.2.2): a GET, HEAD or OPTIONS that is not an
// upgrade (a WebSocket's client reconnects by itself).
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return req.Header.Get("Upgrade") == ""
	}
	return false
}

// isConnectError reports whether err happened before the request reached the
// master (dial refused, unreachable, timed out connecting).
func isConnectError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	var ne net.Error
	switch {
	case errors.Is(err, errNoHealthyMaster):
		status = http.StatusServiceUnavailable
	case errors.Is(err, errBodyTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, errMasterUnreachable):
		status = http.StatusBadGateway
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		status = http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return // the client went away
	}
	p.metrics.countError(status)
	if status != http.StatusServiceUnavailable && status != http.StatusRequestEntityTooLarge {
		p.log.Warn("proxy error", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"timestamp": time.Now().UnixMilli(), "status": status, "error": http.StatusText(status),
		"message": errorMessages[status], "path": r.URL.Path,
	})
}

// errorMessages are the messages of the proxy's own error answers: fixed
// texts, since the error itself names masters' internal addresses and
// transport details (it is logged instead).
var errorMessages = map[int]string{
	http.StatusServiceUnavailable:    "No master is available: retry",
	http.StatusRequestEntityTooLarge: "Request body too large",
	http.StatusGatewayTimeout:        "The master did not answer in time",
	http.StatusBadGateway:            "The master failed to answer",
}

// pick returns the next healthy master not yet tried (round robin), or nil.
func (p *Proxy) pick(tried map[*backend]bool) *backend {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var healthy []*backend
	for _, b := range p.backends {
		if b.healthy.Load() && !tried[b] {
			healthy = append(healthy, b)
		}
	}
	if len(healthy) == 0 {
		return nil
	}
	sort.Slice(healthy, func(i, j int) bool { return healthy[i].url.String() < healthy[j].url.String() })
	return healthy[p.next.Add(1)%uint64(len(healthy))]
}

// markUnreachable marks a master that completes no TCP handshake down, and
// abandons what waits on it.
func (p *Proxy) markUnreachable(b *backend) {
	p.markDown(b)
	if requests, tunnels := b.abandon(); requests+tunnels > 0 {
		p.stats.Abandoned.Add(uint64(requests + tunnels))
		p.log.Warn("master unreachable: its pending requests and WebSockets given up", "master", b.url.Host,
			"requests", requests, "websockets", tunnels)
	}
}

func (p *Proxy) markDown(b *backend) {
	b.fails.Store(int32(p.cfg.UnhealthyAfter))
	if b.healthy.Swap(false) {
		p.log.Warn("master marked unhealthy", "master", b.url.Host)
	}
}

func (p *Proxy) recordFailure(b *backend) {
	if b.fails.Add(1) >= int32(p.cfg.UnhealthyAfter) && b.healthy.Swap(false) {
		p.log.Warn("master marked unhealthy after failed requests", "master", b.url.Host)
	}
}

// Healthy returns the URLs of the masters currently receiving traffic.
func (p *Proxy) Healthy() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []string
	for u, b := range p.backends {
		if b.healthy.Load() {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out
}

// Handler is the proxy's HTTP handler.
func (p *Proxy) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chorus/health", func(w http.ResponseWriter, _ *http.Request) {
		// The number of masters only: their URLs are internal addresses.
		healthy := len(p.Healthy())
		status, word := http.StatusOK, "UP"
		if healthy == 0 {
			status, word = http.StatusServiceUnavailable, "DOWN"
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": word, "healthyMasters": healthy})
	})
	// The masters' internal API (/internal/v1/health: peer masters' checks)
	// and their metrics (/metrics, for a scraper inside the cluster) are
	// not the public's: 404, as for any path no master serves.
	notProxied := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": http.StatusNotFound, "error": "Not Found", "path": r.URL.Path})
	}
	mux.HandleFunc("/internal/", notProxied)
	mux.HandleFunc("/metrics", notProxied)
	mux.HandleFunc("/metrics/", notProxied)
	if p.cfg.Demo.Enabled {
		p.registerDemo(mux)
	}
	if p.inspector != nil {
		p.inspector.register(mux, p.cfg.Demo.AssetsDir)
	}
	mux.Handle("/", limitWebSockets(p.wsLimiter, p.clientAddr, p.rp))
	return mux
}

// Run serves until ctx ends.
func (p *Proxy) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", p.cfg.Listen, err)
	}
	srv := p.http.Server(p.Handler())
	tlsCfg, err := tlscert.Config(p.cfg.TLS)
	if err != nil {
		ln.Close()
		return err
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	p.refresh(ctx)
	var wg sync.WaitGroup
	checkCtx, stopChecks := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.checkLoop(checkCtx)
	}()
	if p.inspector != nil {
		// Stopped with the checks, before the server shuts down: the
		// Inspector's event streams end with it.
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.inspector.feed.Run(checkCtx)
		}()
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	var metricsSrv *http.Server
	if p.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", p.cfg.MetricsListen)
		if err != nil {
			stopChecks()
			wg.Wait()
			_ = srv.Close()
			return fmt.Errorf("listen on %s (proxy.metrics_listen): %w", p.cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", p.metrics.handler())
		metricsSrv = p.http.Server(mux)
		go func() { serveErr <- metricsSrv.Serve(mln) }()
		p.log.Info("metrics served apart, without authentication", "metrics_listen", mln.Addr().String())
	}
	p.log.Info("proxy started", "listen", ln.Addr().String(), "tls", p.cfg.TLS.Mode, "demo", p.cfg.Demo.Enabled, "inspector", p.inspector != nil)

	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	stopChecks()
	wg.Wait()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(shutdownCtx)
	}
	p.transport.CloseIdleConnections()
	p.checker.CloseIdleConnections()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	p.log.Info("proxy stopped")
	return nil
}

// checkLoop discovers masters and checks each of them every health interval.
func (p *Proxy) checkLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.refresh(ctx)
		}
	}
}

// refresh updates the master list (from Redis unless static) and checks
// every master once, concurrently.
func (p *Proxy) refresh(ctx context.Context) {
	if len(p.cfg.Masters) == 0 {
		p.discover(ctx)
	}
	p.mu.RLock()
	list := make([]*backend, 0, len(p.backends))
	for _, b := range p.backends {
		list = append(list, b)
	}
	p.mu.RUnlock()
	var wg sync.WaitGroup
	for _, b := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.check(ctx, b)
		}()
	}
	wg.Wait()
}

func (p *Proxy) discover(ctx context.Context) {
	masters, _, err := p.store.Masters(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("discover masters", "err", err)
		}
		return // keep the last known list: Redis being away must not stop traffic
	}
	seen := map[string]bool{}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range masters {
		u, err := url.Parse(m.InternalURL)
		if err != nil || u.Host == "" {
			continue
		}
		key := u.String()
		seen[key] = true
		if _, ok := p.backends[key]; !ok {
			p.backends[key] = &backend{id: string(m.ID), url: u}
			p.log.Info("master discovered", "master", m.ID, "url", key)
		}
	}
	for key, b := range p.backends {
		if !seen[key] {
			delete(p.backends, key)
			p.log.Info("master gone from the registry", "master", b.id, "url", key)
		}
	}
}

// check probes one master's /chorus/health: 200 makes it healthy at once;
// a 503 (draining) makes it unhealthy at once; other failures count towards
// unhealthy_after.
func (p *Proxy) check(ctx context.Context, b *backend) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.HealthTimeout)
	defer cancel()
	var connected atomic.Bool // a connection to the master, new or reused, was had
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url.String()+"/chorus/health", nil)
	resp, err := p.checker.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	switch {
	case err == nil && resp.StatusCode == http.StatusOK:
		b.fails.Store(0)
		if !b.healthy.Swap(true) {
			p.log.Info("master healthy", "master", b.url.Host)
		}
	case err == nil && resp.StatusCode == http.StatusServiceUnavailable:
		p.markDown(b)
	default:
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
			return
		}
		p.recordFailure(b)
		// A failed check that could not even connect, once the master is
		// down: its host is gone (a live master's kernel completes the
		// handshake however busy the master; a dead process resets).
		// The first failed check of a lost host may have hung on a
		// kept-alive connection, which the timeout closed: the next one
		// dials.
		if !connected.Load() && !b.healthy.Load() {
			p.markUnreachable(b)
		}
	}
}
