package medianodes

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// Liveness streams: the controller holds one open to every running media
// node (mediaapi.RouteLiveness). Heartbeats through Redis and direct checks
// cannot tell a dead node from a frozen or starved one before the crash
// window has passed; a stream can: the kernel of a node whose process exits
// closes its connections, and the controller reads the end within
// milliseconds, while a node stopped by SIGSTOP, or at 100 % CPU, keeps it
// open. A stream that ended is therefore taken as a crash at once, once two
// direct checks confirm that nothing answers on the node's API any more. A
// host that vanishes (power, network) closes nothing: its nodes are still
// found by the crash window.

// livenessRetry is how long a follower waits before reopening a stream that
// would not open, or that ended while the node still answered.
const livenessRetry = time.Second

// livenessConfirmGap separates the two direct checks that confirm a lost
// stream.
const livenessConfirmGap = 100 * time.Millisecond

// prober checks a node's health endpoint (Controller.check).
type prober func(ctx context.Context, n nodeAddr) error

// nodeAddr is what a follower needs of a node.
type nodeAddr struct {
	ID  protocol.NodeID
	URI string
}

// follower follows one node's liveness stream.
type follower struct {
	uri    string
	cancel context.CancelFunc
	// lostAt is when the stream ended, once the node then failed both
	// checks (unix ms; 0: not lost).
	lostAt atomic.Int64
}

// followers is the controller's set of followers, by node.
type followers struct {
	http   *http.Client // without a timeout
	secret string
	check  prober
	// lost is called once a node's stream is lost (the controller then
	// runs a round at once).
	lost func()
	log  *slog.Logger

	mu sync.Mutex
	by map[protocol.NodeID]*follower
	wg sync.WaitGroup
}

func newFollowers(client *http.Client, secret string, check prober, lost func(), log *slog.Logger) *followers {
	return &followers{http: client, secret: secret, check: check, lost: lost, log: log, by: map[protocol.NodeID]*follower{}}
}

// follow makes sure a node's stream is followed (a node whose internal URL
// changed is followed anew), with ctx as the follower's parent.
func (fs *followers) follow(ctx context.Context, n nodeAddr) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.by[n.ID]; f != nil {
		if f.uri == n.URI {
			return
		}
		f.cancel()
	}
	fctx, cancel := context.WithCancel(ctx)
	f := &follower{uri: n.URI, cancel: cancel}
	fs.by[n.ID] = f
	fs.wg.Add(1)
	go func() {
		defer fs.wg.Done()
		fs.run(fctx, n, f)
	}()
}

// lostAt returns when a node's lost stream ended (zero: it was not lost, or
// the node is not followed).
func (fs *followers) lostAt(id protocol.NodeID) time.Time {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.by[id]; f != nil {
		if ms := f.lostAt.Load(); ms != 0 {
			return time.UnixMilli(ms)
		}
	}
	return time.Time{}
}

// unfollow stops following a node.
func (fs *followers) unfollow(id protocol.NodeID) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f := fs.by[id]; f != nil {
		f.cancel()
		delete(fs.by, id)
	}
}

// keepOnly stops following every node not in keep.
func (fs *followers) keepOnly(keep map[protocol.NodeID]bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for id, f := range fs.by {
		if !keep[id] {
			f.cancel()
			delete(fs.by, id)
		}
	}
}

// stop stops every follower and waits for them.
func (fs *followers) stop() {
	fs.keepOnly(nil)
	fs.wg.Wait()
}

// run opens the node's stream again and again until ctx ends or the stream
// is lost: it ended and two direct checks, 100 ms apart, failed.
func (fs *followers) run(ctx context.Context, n nodeAddr, f *follower) {
	client := mediaapi.NewClient(fs.http, n.URI, fs.secret)
	for {
		open := false
		err := client.WatchLiveness(ctx, func() { open = true })
		ended := time.Now()
		if ctx.Err() != nil {
			return
		}
		if open && errors.Is(err, mediaapi.ErrLivenessClosed) {
			if fs.confirmLost(ctx, n) {
				f.lostAt.Store(ended.UnixMilli())
				fs.log.Warn("media node closed its liveness stream and does not answer", "node", n.ID, "err", err)
				fs.lost()
				return
			}
			fs.log.Info("media node liveness stream ended, the node still answers: reopening it", "node", n.ID, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(livenessRetry):
		}
	}
}

// confirmLost checks the node twice; it is lost if both checks fail.
func (fs *followers) confirmLost(ctx context.Context, n nodeAddr) bool {
	if fs.check(ctx, n) == nil {
		return false
	}
	select {
	case <-ctx.Done():
		return false
	case <-time.After(livenessConfirmGap):
	}
	return fs.check(ctx, n) != nil && ctx.Err() == nil
}
