package participant

import (
	"context"
	"encoding/json"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

// Media recovery, as openvidu-browser does it (Stream.ts, Session.ts): a
// peer connection whose ICE fails is replaced through the server: a
// publisher sends reconnectStream with a new offer (same stream id), a
// subscription asks prepareReceiveVideoFrom with reconnect and answers with
// reconnectStream. The server may also move a subscription by itself
// (forciblyReconnectSubscriber with its offer), after the stream moved to
// another media node. After a WebSocket resumption, every stream whose ICE
// is not connected is re-established at once. Unlike openvidu-browser, a
// failed attempt is retried (with backoff) until it succeeds or the
// participant closes. And unlike openvidu-browser, a participant re-publishes
// as soon as the server says its media node crashed
// (protocol.NotifyReconnectPublisher), before its ICE has noticed.

// Recovery records one re-establishment of a stream's media.
type Recovery struct {
	StreamID string
	// Kind is "publisher", "subscriber" (its own reconnection) or "forced"
	// (the server's forciblyReconnectSubscriber).
	Kind     string
	Started  time.Time
	Done     time.Time // zero if it gave up
	Attempts int
	Err      error
}

// Recoveries returns the media recoveries so far.
func (p *Participant) Recoveries() []Recovery {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Recovery(nil), p.recoveries...)
}

func (p *Participant) recordRecovery(r Recovery) {
	p.mu.Lock()
	p.recoveries = append(p.recoveries, r)
	p.mu.Unlock()
}

// background runs fn owned by the participant (Close waits for it), unless
// the participant is closing.
func (p *Participant) background(fn func()) bool {
	p.rpcMu.Lock()
	if p.closing {
		p.rpcMu.Unlock()
		return false
	}
	p.wg.Add(1)
	p.rpcMu.Unlock()
	go func() {
		defer p.wg.Done()
		fn()
	}()
	return true
}

func iceBroken(s webrtc.ICEConnectionState) bool {
	return s != webrtc.ICEConnectionStateConnected && s != webrtc.ICEConnectionStateCompleted
}

// watchPublisher recovers the publisher when its current peer connection's
// ICE fails (and marks its StepICE).
func (p *Participant) watchPublisher(pub *Publisher, pc *webrtc.PeerConnection) {
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			pub.steps.mark(StepICE)
		}
		if s == webrtc.ICEConnectionStateFailed && !p.cfg.NoMediaRecovery && pub.current() == pc {
			p.recoverPublisher(pub, false)
		}
	})
}

// watchSubscription recovers the subscription when its current peer
// connection's ICE fails (and marks its StepICE).
func (p *Participant) watchSubscription(sub *Subscription, pc *webrtc.PeerConnection) {
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			sub.steps.mark(StepICE)
		}
		if s == webrtc.ICEConnectionStateFailed && !p.cfg.NoMediaRecovery && sub.current() == pc {
			p.recoverSubscription(sub)
		}
	})
}

// retry runs attempt until it succeeds, done says the stream is fine again,
// or the participant closes; it records the recovery.
func (p *Participant) retry(r Recovery, attempt func(ctx context.Context) error, done func() bool) {
	wait := 250 * time.Millisecond
	for {
		r.Attempts++
		ctx, cancel := context.WithTimeout(p.bg, 40*time.Second)
		err := attempt(ctx)
		cancel()
		if err == nil || done() {
			r.Done, r.Err = time.Now(), nil
			p.recordRecovery(r)
			p.cfg.Logger.Debug("media recovered", "stream", r.StreamID, "kind", r.Kind, "after", r.Done.Sub(r.Started), "attempts", r.Attempts)
			return
		}
		r.Err = err
		p.cfg.Logger.Debug("media recovery attempt failed", "stream", r.StreamID, "kind", r.Kind, "err", err)
		select {
		case <-p.bg.Done():
			p.recordRecovery(r)
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// recoverPublisher re-publishes the stream (reconnectStream) until it works
// or, unless told by the server (whose word outweighs an ICE state that has
// not noticed the loss yet), its ICE is connected again.
func (p *Participant) recoverPublisher(pub *Publisher, told bool) {
	if !pub.recovering.CompareAndSwap(false, true) {
		return
	}
	fine := func() bool { return !iceBroken(pub.current().ICEConnectionState()) }
	if told {
		fine = func() bool { return false }
	}
	ok := p.background(func() {
		defer pub.recovering.Store(false)
		p.retry(Recovery{StreamID: pub.StreamID, Kind: "publisher", Started: time.Now()},
			func(ctx context.Context) error { return p.Reconnect(ctx, pub) }, fine)
	})
	if !ok {
		pub.recovering.Store(false)
	}
}

// recoverSubscription re-subscribes until the stream arrives again, by its
// own reconnection or by the server's.
func (p *Participant) recoverSubscription(sub *Subscription) {
	if !sub.recovering.CompareAndSwap(false, true) {
		return
	}
	ok := p.background(func() {
		defer sub.recovering.Store(false)
		p.retry(Recovery{StreamID: sub.StreamID, Kind: "subscriber", Started: time.Now()},
			func(ctx context.Context) error { return p.resubscribe(ctx, sub) },
			func() bool { return !iceBroken(sub.current().ICEConnectionState()) })
	})
	if !ok {
		sub.recovering.Store(false)
	}
}

// resubscribe replaces the subscription's peer connection: a new server
// offer (prepareReceiveVideoFrom with reconnect), answered with
// reconnectStream.
func (p *Participant) resubscribe(ctx context.Context, sub *Subscription) error {
	sub.renegotiation.Lock()
	defer sub.renegotiation.Unlock()
	if !iceBroken(sub.current().ICEConnectionState()) {
		return nil // the server moved it meanwhile
	}
	var prep struct {
		SDPOffer string `json:"sdpOffer"`
	}
	if err := p.call(ctx, "prepareReceiveVideoFrom", map[string]any{"sender": sub.StreamID, "reconnect": true}, &prep); err != nil {
		return err
	}
	pc, err := p.answer(ctx, sub, prep.SDPOffer, "reconnectStream", map[string]any{"stream": sub.StreamID}, "sdpString")
	if err != nil {
		return err
	}
	_ = sub.swap(pc).Close()
	p.watchSubscription(sub, pc)
	return waitConnected(ctx, pc)
}

// onForcedReconnect answers the server's forciblyReconnectSubscriber: a
// new peer connection from its offer, answered with reconnectStream
// (forciblyReconnect). Called with p.mu held.
func (p *Participant) onForcedReconnect(params json.RawMessage) {
	var n protocol.ForciblyReconnectNotification
	if json.Unmarshal(params, &n) != nil {
		return
	}
	sub := p.subs[n.StreamID]
	if sub == nil || p.cfg.NoMediaRecovery {
		return
	}
	p.background(func() {
		r := Recovery{StreamID: sub.StreamID, Kind: "forced", Started: time.Now(), Attempts: 1}
		sub.renegotiation.Lock()
		defer sub.renegotiation.Unlock()
		ctx, cancel := context.WithTimeout(p.bg, 40*time.Second)
		defer cancel()
		pc, err := p.answer(ctx, sub, n.SDPOffer, "reconnectStream",
			map[string]any{"stream": sub.StreamID, "forciblyReconnect": true}, "sdpString")
		if err == nil {
			_ = sub.swap(pc).Close()
			p.watchSubscription(sub, pc)
			err = waitConnected(ctx, pc)
		}
		if err != nil {
			// The server offers again if its offer went stale; else the
			// subscription's own recovery takes over when ICE fails.
			r.Err = err
		} else {
			r.Done = time.Now()
		}
		p.recordRecovery(r)
	})
}

// onReconnectPublisher re-publishes the stream the server names
// (protocol.NotifyReconnectPublisher: its media node crashed). Called with
// p.mu held.
func (p *Participant) onReconnectPublisher(params json.RawMessage) {
	var n protocol.ReconnectPublisher
	if json.Unmarshal(params, &n) != nil || p.cfg.NoMediaRecovery {
		return
	}
	for _, pub := range p.pubs {
		if pub.StreamID == n.StreamID {
			p.cfg.Logger.Debug("the server asks to re-publish", "stream", n.StreamID, "reason", n.Reason)
			p.recoverPublisher(pub, true)
		}
	}
}

// reconnectBrokenStreams re-establishes, after a WebSocket resumption, every
// stream whose ICE is not connected (openvidu-browser's
// Session.reconnectBrokenStreams).
func (p *Participant) reconnectBrokenStreams() {
	if p.cfg.NoMediaRecovery {
		return
	}
	p.mu.Lock()
	pubs := append([]*Publisher(nil), p.pubs...)
	subs := make([]*Subscription, 0, len(p.subs))
	for _, s := range p.subs {
		subs = append(subs, s)
	}
	p.mu.Unlock()
	for _, pub := range pubs {
		if iceBroken(pub.current().ICEConnectionState()) {
			p.recoverPublisher(pub, false)
		}
	}
	for _, s := range subs {
		if iceBroken(s.current().ICEConnectionState()) {
			p.recoverSubscription(s)
		}
	}
}
