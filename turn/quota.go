package turn

import (
	"net"
	"sync"
	"time"
)

// pendingTTL bounds how long an admitted Allocate may stay pending (between
// pion's QuotaHandler and its created or error event) before its slot is
// given back regardless. Pion settles a request synchronously, in
// microseconds; the bound only guards against a path that reports neither.
const pendingTTL = 10 * time.Second

// quota counts allocations per user (the connection id of the credential)
// and admits new ones up to max: the "allocation quota" of RFC 8656 section
// 7.2 (RFC 5766 section 6.2), answered 486 Allocation Quota Reached.
//
// Counts come from pion's EventHandler: created and deleted events move the
// active count, so it goes down however an allocation ends (Refresh with
// lifetime 0, expiry, the client's TCP or TLS connection closing, shutdown).
// An admitted request holds a pending slot, keyed by its source transport
// address, until its allocation is created or its request fails: without it,
// Allocate requests of one user handled at once on different connections
// (every TCP and TLS connection has its own goroutine in pion) would all pass
// the check before any of them is counted. A failed request's slot is
// released by pion's error event, which comes just after the error response
// has been sent: a retry from another transport address in that instant is
// still counted against the quota (a retry from the same address is not).
type quota struct {
	max int // <= 0: unlimited

	mu      sync.Mutex
	active  map[string]int
	pending map[string]pendingAlloc // by source address key
}

type pendingAlloc struct {
	user  string
	since time.Time
}

func newQuota(max int) *quota {
	return &quota{max: max, active: map[string]int{}, pending: map[string]pendingAlloc{}}
}

// admit is pion's QuotaHandler: it reports whether user may make one more
// allocation from src, and if so holds a slot for it.
func (q *quota) admit(user string, src net.Addr, now time.Time) bool {
	key := addrKey(src)
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.pending, key) // a previous request from src has settled, whatever pion said
	n := q.active[user]
	for k, p := range q.pending {
		if now.Sub(p.since) > pendingTTL {
			delete(q.pending, k)
			continue
		}
		if p.user == user {
			n++
		}
	}
	if q.max > 0 && n >= q.max {
		return false
	}
	q.pending[key] = pendingAlloc{user: user, since: now}
	return true
}

// created records an allocation of user made from src.
func (q *quota) created(user string, src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.pending, addrKey(src))
	q.active[user]++
}

// failed releases the slot held for a request from src that did not end in
// an allocation.
func (q *quota) failed(src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.pending, addrKey(src))
}

// deleted records the end of an allocation of user.
func (q *quota) deleted(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.active[user] <= 1 {
		delete(q.active, user)
		return
	}
	q.active[user]--
}

// pendingCount returns how many admitted requests have not settled.
func (q *quota) pendingCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// count returns user's active allocations.
func (q *quota) count(user string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active[user]
}

func addrKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.Network() + "/" + a.String()
}
