package master

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/chorus-rtc/chorus/master/session"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// peerChecker checks the other masters over HTTP (their authenticated
// /internal/v1/health) every interval. A peer that answered at least once
// and then fails every check for window is declared crashed
// (session.Service.DeclareMasterCrashed): the proxies stop routing to it at
// once and its participants are detached so they can resume elsewhere,
// instead of waiting for its registration to lapse.
//
// A peer that never answered is not declared by its checks: a master that
// has just started may be registered before its address is reachable (on a
// Swarm, a task's DNS name resolves on the other hosts a moment after the
// task runs), and declaring it would emit a nodeCrashed for a live master.
// Such a peer, if it is dead, is declared when its registration expires
// (the sweeper; 3 s at the default heartbeat) rather than after window.
type peerChecker struct {
	store    *store.Store
	sessions *session.Service
	self     *session.Incarnation
	client   *http.Client
	secret   string
	interval time.Duration
	window   time.Duration
	observer peerObserver
	log      *slog.Logger

	mu       sync.Mutex
	failing  map[protocol.MasterID]time.Time // incarnation -> first failed check
	answered map[protocol.MasterID]bool      // peers that passed a check
	warned   map[protocol.MasterID]bool      // never-answering peers logged
	checked  map[protocol.MasterID]bool      // peers told to the observer
	suspects chan protocol.MasterID
}

// peerObserver is told of each check's outcome (the master's metrics).
type peerObserver interface {
	PeerChecked(peer string, healthy bool)
	PeerGone(peer string)
	PeerCrashed()
}

func newPeerChecker(st *store.Store, sessions *session.Service, self *session.Incarnation, secret string, interval, window time.Duration,
	observer peerObserver, log *slog.Logger) *peerChecker {
	return &peerChecker{
		store: st, sessions: sessions, self: self, secret: secret, interval: interval, window: window, observer: observer, log: log,
		client:  &http.Client{Timeout: interval},
		failing: map[protocol.MasterID]time.Time{}, answered: map[protocol.MasterID]bool{}, warned: map[protocol.MasterID]bool{},
		checked: map[protocol.MasterID]bool{}, suspects: make(chan protocol.MasterID, 64),
	}
}

// Suspect asks for an immediate check of a peer (a participant of that
// master reconnected here: its socket there probably died).
func (p *peerChecker) Suspect(inc protocol.MasterID) {
	select {
	case p.suspects <- inc:
	default:
	}
}

// Run checks the peers until ctx ends.
func (p *peerChecker) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case inc := <-p.suspects:
			p.round(ctx, inc)
		case <-t.C:
			p.round(ctx, "")
		}
	}
}

// round checks every peer (or only the given one) concurrently.
func (p *peerChecker) round(ctx context.Context, only protocol.MasterID) {
	peers, _, err := p.store.Masters(ctx)
	if err != nil {
		return // Redis unavailable: no peer is judged on that
	}
	me := p.self.ID()
	var wg sync.WaitGroup
	seen := map[protocol.MasterID]bool{}
	for _, peer := range peers {
		if peer.ID == me || peer.Draining || (only != "" && peer.ID != only) {
			// A draining peer is leaving on purpose; if it dies meanwhile,
			// its registration expires and the sweeper declares it.
			continue
		}
		seen[peer.ID] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.check(ctx, peer)
		}()
	}
	wg.Wait()
	if only == "" {
		p.mu.Lock()
		for inc := range p.failing {
			if !seen[inc] {
				delete(p.failing, inc) // deregistered or already declared
			}
		}
		for inc := range p.checked {
			if !seen[inc] {
				delete(p.checked, inc)
				delete(p.answered, inc)
				delete(p.warned, inc)
				p.observer.PeerGone(string(inc))
			}
		}
		p.mu.Unlock()
	}
}

func (p *peerChecker) check(ctx context.Context, peer store.MasterInfo) {
	ctx, cancel := context.WithTimeout(ctx, p.interval)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, peer.InternalURL+"/internal/v1/health", nil)
	req.Header.Set("Authorization", "Bearer "+p.secret)
	resp, err := p.client.Do(req)
	healthy := err == nil && resp.StatusCode == http.StatusOK
	if err == nil {
		resp.Body.Close()
	}
	if ctx.Err() != nil && err != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return // shutting down
	}
	now := time.Now()
	p.mu.Lock()
	first, wasFailing := p.failing[peer.ID]
	switch {
	case healthy:
		delete(p.failing, peer.ID)
		p.answered[peer.ID] = true
	case !wasFailing:
		p.failing[peer.ID] = now
		first = now
	}
	overdue := !healthy && now.Sub(first) >= p.window
	declare := overdue && p.answered[peer.ID]
	if declare {
		delete(p.failing, peer.ID)
	}
	warn := overdue && !declare && !p.warned[peer.ID]
	if warn {
		p.warned[peer.ID] = true
	}
	p.checked[peer.ID] = true
	p.observer.PeerChecked(string(peer.ID), healthy)
	p.mu.Unlock()
	if warn {
		p.log.Warn("peer master registered but never reachable: left to its registration's expiry", "peer", peer.ID,
			"url", peer.InternalURL, "since", first, "err", err)
	}
	if declare {
		p.log.Warn("peer master failed its health checks", "peer", peer.ID, "since", first, "err", err)
		p.observer.PeerCrashed()
		p.sessions.DeclareMasterCrashed(context.WithoutCancel(ctx), peer, first)
	}
}
