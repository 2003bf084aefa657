// Package eventdelivery delivers the cluster's events (shared/events, stored
// on the bus of shared/store) to OpenVidu's sinks: the webhook and the CDR
// file. Every master runs a Dispatcher; a session's events are delivered by
// one master at a time (a lease), in order, at least once: a master that dies
// mid-delivery loses its lease and the next one re-delivers what it had not
// acknowledged. An event the webhook refuses until its deadline goes to the
// dead-letter stream, from where `chorus events dead-letter replay` sends it
// again.
package eventdelivery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// Config configures a Dispatcher.
type Config struct {
	Store *store.EventBus
	// Holder names this master in leases and consumer groups.
	Holder protocol.MasterID
	// Webhook and CDR are the sinks; nil disables one. With neither, events
	// are still consumed (and visible to `chorus events tail`).
	Webhook *Webhook
	CDR     *CDRFile
	// LeaseTTL is how long a claim on a stream lasts without renewal.
	LeaseTTL time.Duration
	// Poll is how often streams are scanned without a wake-up.
	Poll time.Duration
	// MaxStreams bounds the streams delivered concurrently.
	MaxStreams int
	// OnDelivered, if set, is told of each event handed to a sink: the
	// sink (webhook, cdr), the outcome (delivered; dead_letter: the webhook
	// refused it until its deadline; failed: the CDR file could not be
	// written) and the time since the event was emitted. It must not block.
	OnDelivered func(sink, outcome string, latency time.Duration)
	Logger      *slog.Logger
}

// Dispatcher delivers events until its context ends.
type Dispatcher struct {
	cfg Config
	st  *store.EventBus
	log *slog.Logger

	mu     sync.Mutex
	active map[protocol.SessionID]bool
	wg     sync.WaitGroup
	sem    chan struct{}
}

// New returns a Dispatcher.
func New(cfg Config) *Dispatcher {
	if cfg.Poll == 0 {
		cfg.Poll = time.Second
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnDelivered == nil {
		cfg.OnDelivered = func(string, string, time.Duration) {}
	}
	return &Dispatcher{cfg: cfg, st: cfg.Store, log: cfg.Logger, active: map[protocol.SessionID]bool{}, sem: make(chan struct{}, cfg.MaxStreams)}
}

// Run delivers events until ctx ends, then waits for the deliveries in
// progress to stop (they release their leases; what they had not
// acknowledged is delivered again by another master).
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.wg.Wait()
	wakes := d.st.SubscribeEventWakes(ctx)
	poll := time.NewTicker(d.cfg.Poll)
	defer poll.Stop()
	cleanup := time.NewTicker(10 * time.Second)
	defer cleanup.Stop()
	d.scan(ctx, false)
	for {
		select {
		case <-ctx.Done():
			return nil
		case sid, ok := <-wakes:
			if !ok {
				<-ctx.Done()
				return nil
			}
			d.start(ctx, sid)
		case <-poll.C:
			d.scan(ctx, false)
		case <-cleanup.C:
			d.scan(ctx, true)
		}
	}
}

// scan starts delivering every stream with events; with drained, it also
// forgets the empty streams of sessions that no longer exist (normally done
// by whoever drained them, unless it died first).
func (d *Dispatcher) scan(ctx context.Context, drained bool) {
	sids, err := d.st.EventStreams(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("list event streams", "err", err)
		}
		return
	}
	lens, err := d.st.EventStreamLengths(ctx, sids)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("measure event streams", "err", err)
		}
		return
	}
	rand.Shuffle(len(sids), func(i, j int) { sids[i], sids[j] = sids[j], sids[i] })
	for _, sid := range sids {
		switch {
		case lens[sid] > 0:
			d.start(ctx, sid)
		case drained:
			if _, err := d.st.ForgetDrainedStream(ctx, sid); err != nil {
				d.log.Warn("forget drained event stream", "session", sid, "err", err)
			}
		}
	}
}

// start delivers one stream in the background if this master can lease it.
func (d *Dispatcher) start(ctx context.Context, sid protocol.SessionID) {
	d.mu.Lock()
	if d.active[sid] || ctx.Err() != nil {
		d.mu.Unlock()
		return
	}
	select {
	case d.sem <- struct{}{}:
	default:
		d.mu.Unlock()
		return // busy: the next scan gets it
	}
	ok, err := d.st.AcquireEventLease(ctx, sid, d.cfg.Holder, d.cfg.LeaseTTL)
	if err != nil || !ok {
		<-d.sem
		d.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			d.log.Warn("lease event stream", "session", sid, "err", err)
		}
		return
	}
	d.active[sid] = true
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		defer func() {
			d.mu.Lock()
			delete(d.active, sid)
			d.mu.Unlock()
			<-d.sem
		}()
		d.deliverStream(ctx, sid)
	}()
}

// deliverStream delivers a leased stream's events in order until it is
// empty, keeping the lease alive; it stops at once if the lease is lost.
func (d *Dispatcher) deliverStream(parent context.Context, sid protocol.SessionID) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(d.cfg.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				ok, err := d.st.AcquireEventLease(ctx, sid, d.cfg.Holder, d.cfg.LeaseTTL)
				if err != nil || !ok {
					if ctx.Err() == nil {
						d.log.Warn("lost the lease of an event stream: another master takes over", "session", sid, "err", err)
					}
					cancel()
					return
				}
			}
		}
	}()
	defer func() {
		cancel()
		<-renewed
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(parent), 2*time.Second)
		defer rcancel()
		_ = d.st.ReleaseEventLease(rctx, sid, d.cfg.Holder)
	}()

	for ctx.Err() == nil {
		batch, err := d.st.PendingEvents(ctx, sid, d.cfg.Holder, 32)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("read events", "session", sid, "err", err)
			}
			return
		}
		if len(batch) == 0 {
			if _, err := d.st.ForgetDrainedStream(ctx, sid); err != nil && ctx.Err() == nil {
				d.log.Warn("forget drained event stream", "session", sid, "err", err)
			}
			return
		}
		for _, e := range batch {
			if err := d.deliver(ctx, sid, e); err != nil {
				return // stopping or lease lost: not acknowledged, delivered again later
			}
			if err := d.st.AckEvent(ctx, sid, e.StreamID); err != nil {
				if ctx.Err() == nil {
					d.log.Warn("acknowledge event", "session", sid, "event", e.Name, "err", err)
				}
				return
			}
		}
	}
}

// errStopping means a delivery was interrupted and must be redone.
var errStopping = errors.New("delivery interrupted")

// deliver hands one event to the sinks. A webhook that keeps failing until
// the deadline sends the event to the dead-letter stream; only an
// interruption (shutdown, lost lease) returns an error.
func (d *Dispatcher) deliver(ctx context.Context, sid protocol.SessionID, e store.StoredEvent) error {
	emitted, _ := store.EntryTime(e.StreamID)
	if d.cfg.CDR != nil {
		if err := d.cfg.CDR.Write(e.Name, e.Body); err != nil {
			d.log.Error("write CDR", "event", e.Name, "err", err)
			d.cfg.OnDelivered("cdr", "failed", 0)
		} else {
			d.cfg.OnDelivered("cdr", "delivered", time.Since(emitted))
		}
	}
	if d.cfg.Webhook == nil || !d.cfg.Webhook.Wants(e.Name) {
		return nil
	}
	err := d.cfg.Webhook.Deliver(ctx, e)
	if err == nil {
		d.log.Debug("event posted", "event", e.Name, "session", sid, "id", e.ID)
		d.cfg.OnDelivered("webhook", "delivered", time.Since(emitted))
		return nil
	}
	if ctx.Err() != nil {
		return errStopping
	}
	d.log.Warn("event not delivered before its deadline: moved to the dead-letter stream",
		"event", e.Name, "session", sid, "id", e.ID, "err", err)
	dl := store.DeadLetter{StoredEvent: e, Session: sid, Error: err.Error(), FailedAt: time.Now().UnixMilli()}
	if err := d.st.AddDeadLetter(ctx, dl); err != nil {
		d.log.Error("dead-letter an event", "event", e.Name, "id", e.ID, "err", err)
		return errStopping
	}
	d.cfg.OnDelivered("webhook", "dead_letter", 0)
	return nil
}
