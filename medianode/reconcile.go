package medianode

import (
	"context"
	"errors"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// reconciler releases peer connections that the cluster state no longer
// references: endpoints of sessions that are gone (Redis lost them, or a
// master died before releasing them) and endpoints no connection record
// names. An endpoint is released only after it has been unreferenced for the
// whole grace period, and never while Redis cannot be read.
type reconciler struct {
	node     *Node
	interval time.Duration
	grace    time.Duration
	missing  map[string]time.Time // "<sid>/<endpoint>" -> first seen unreferenced
}

func (r *reconciler) run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.round(ctx)
		}
	}
}

func (r *reconciler) round(ctx context.Context) {
	n := r.node
	bySession := map[string][]string{}
	for _, e := range n.sfu.Endpoints() {
		bySession[e.SessionID] = append(bySession[e.SessionID], e.ID)
	}
	now := time.Now()
	seen := map[string]bool{}
	for sid, endpoints := range bySession {
		referenced := map[string]bool{}
		snap, err := n.store.Load(ctx, protocol.SessionID(sid))
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return // Redis unavailable: judge nothing
		default:
			for _, c := range snap.Conns {
				if p := c.Publisher; p != nil && p.Node == n.id {
					referenced[string(p.StreamID)] = true
				}
				for streamID, sub := range c.Subscriptions {
					if sub.Node == n.id {
						referenced[store.SubscriberEndpointID(c.ID, streamID)] = true
					}
				}
			}
		}
		for _, id := range endpoints {
			key := sid + "/" + id
			if referenced[id] {
				continue
			}
			seen[key] = true
			first, ok := r.missing[key]
			if !ok {
				r.missing[key] = now
				continue
			}
			if now.Sub(first) >= r.grace {
				n.log.Warn("releasing an endpoint the cluster state no longer references", "session", sid, "endpoint", id)
				n.sfu.Release(sid, id)
				delete(r.missing, key)
			}
		}
	}
	for key := range r.missing {
		if !seen[key] {
			delete(r.missing, key)
		}
	}
}
