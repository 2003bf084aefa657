package proxy

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxLimiterClients bounds the memory of a rateLimiter: past this many
// clients with a partly used bucket, new clients are refused until buckets
// refill (a flood of addresses cannot grow the map without bound).
const maxLimiterClients = 65536

// rateLimiter is a token bucket per client: each client may make burst
// requests at once, then perMinute per minute. Its zero value is unusable;
// build it with newRateLimiter.
type rateLimiter struct {
	perSecond float64
	burst     float64
	now       func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// newRateLimiter allows burst requests at once and perMinute a minute per
// client; now is the clock (time.Now outside tests).
func newRateLimiter(perMinute, burst int, now func() time.Time) *rateLimiter {
	return &rateLimiter{
		perSecond: float64(perMinute) / 60, burst: float64(burst), now: now,
		buckets: map[string]*bucket{}, lastSweep: now(),
	}
}

// allow takes a token from client's bucket. When there is none it returns
// false and how long until there is.
func (l *rateLimiter) allow(client string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.lastSweep) > time.Minute || len(l.buckets) >= maxLimiterClients {
		l.sweep(now)
	}
	b, ok := l.buckets[client]
	if !ok {
		if len(l.buckets) >= maxLimiterClients {
			return false, time.Minute
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[client] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.perSecond)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	if l.perSecond <= 0 {
		return false, time.Minute
	}
	return false, time.Duration((1 - b.tokens) / l.perSecond * float64(time.Second))
}

// sweep forgets the clients whose bucket is full again: they are as new.
func (l *rateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for c, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.perSecond >= l.burst {
			delete(l.buckets, c)
		}
	}
}

// clientKey is the rate-limited identity of a client address (the peer,
// or the client a trusted proxy forwarded for: Proxy.clientAddr): the IP,
// an IPv6 one by its /64, which one subscriber usually has whole.
func clientKey(host string) string {
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() != nil {
		return ip.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// connLimiter caps the connections open at once per client (the WebSocket
// connections the proxy relays: each holds a socket here and on a master,
// and a goroutine and buffers on both). Its zero value is unusable; build it
// with newConnLimiter.
type connLimiter struct {
	max int

	mu   sync.Mutex
	open map[string]int
}

// newConnLimiter allows max connections per client (0: no limit).
func newConnLimiter(maxPerClient int) *connLimiter {
	return &connLimiter{max: maxPerClient, open: map[string]int{}}
}

// acquire counts one more connection of client; it reports false, counting
// nothing, when client has max open already.
func (l *connLimiter) acquire(client string) bool {
	if l.max <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[client] >= l.max {
		return false
	}
	l.open[client]++
	return true
}

// release counts one connection of client fewer (after a successful acquire).
func (l *connLimiter) release(client string) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[client]--; l.open[client] <= 0 {
		delete(l.open, client)
	}
}

// limitWebSockets refuses, with 429, a WebSocket upgrade from a client
// (clientAddr: the peer, or whom a trusted proxy forwarded for) that has
// max WebSocket connections open through the proxy already; other requests
// pass untouched. The upgraded connection counts until next returns
// (httputil.ReverseProxy returns once the relay ends).
func limitWebSockets(l *connLimiter, clientAddr func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.max <= 0 || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			next.ServeHTTP(w, r)
			return
		}
		client := clientKey(clientAddr(r))
		if !l.acquire(client) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, fmt.Sprintf("Too many WebSocket connections from this address (at most %d)", l.max), http.StatusTooManyRequests)
			return
		}
		defer l.release(client)
		next.ServeHTTP(w, r)
	})
}
