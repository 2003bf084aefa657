package turn

import (
	"net"
	"testing"
	"time"
)

func TestQuotaAccounting(t *testing.T) {
	t0 := time.Unix(1000, 0)
	src := func(port int) net.Addr { return &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: port} }
	tcpSrc := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}

	type step struct {
		op   string // admit, created, failed, deleted
		user string
		src  net.Addr
		at   time.Duration
		want bool // admit's answer
	}
	tests := []struct {
		name      string
		max       int
		steps     []step
		wantCount map[string]int
	}{
		{name: "pending slots count", max: 2, steps: []step{
			{op: "admit", user: "a", src: src(1), want: true},
			{op: "admit", user: "a", src: src(2), want: true},
			{op: "admit", user: "a", src: src(3), want: false}, // two pending
			{op: "admit", user: "b", src: src(4), want: true},  // another user
		}, wantCount: map[string]int{"a": 0, "b": 0}},
		{name: "created moves pending to active", max: 2, steps: []step{
			{op: "admit", user: "a", src: src(1), want: true},
			{op: "created", user: "a", src: src(1)},
			{op: "admit", user: "a", src: src(2), want: true},
			{op: "created", user: "a", src: src(2)},
			{op: "admit", user: "a", src: src(3), want: false},
			{op: "deleted", user: "a"},
			{op: "admit", user: "a", src: src(3), want: true},
		}, wantCount: map[string]int{"a": 1}},
		{name: "failed releases", max: 1, steps: []step{
			{op: "admit", user: "a", src: src(1), want: true},
			{op: "failed", src: src(1)},
			{op: "admit", user: "a", src: src(2), want: true},
		}, wantCount: map[string]int{"a": 0}},
		{name: "same source replaces its pending slot", max: 1, steps: []step{
			{op: "admit", user: "a", src: src(1), want: true},
			{op: "admit", user: "a", src: src(1), want: true},
		}},
		{name: "UDP and TCP sources differ", max: 1, steps: []step{
			{op: "admit", user: "a", src: src(1), want: true},
			{op: "admit", user: "a", src: tcpSrc, want: false},
		}},
		{name: "stale pending slots expire", max: 1, steps: []step{
			{op: "admit", user: "a", src: src(1), want: true},
			{op: "admit", user: "a", src: src(2), at: pendingTTL, want: false},
			{op: "admit", user: "a", src: src(2), at: pendingTTL + time.Second, want: true},
		}},
		{name: "unlimited", max: -1, steps: []step{
			{op: "admit", user: "a", src: src(1), want: true},
			{op: "created", user: "a", src: src(1)},
			{op: "admit", user: "a", src: src(2), want: true},
			{op: "created", user: "a", src: src(2)},
		}, wantCount: map[string]int{"a": 2}},
		{name: "deleted never goes negative", max: 1, steps: []step{
			{op: "deleted", user: "a"},
			{op: "admit", user: "a", src: src(1), want: true},
			{op: "created", user: "a", src: src(1)},
		}, wantCount: map[string]int{"a": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newQuota(tt.max)
			for i, s := range tt.steps {
				switch s.op {
				case "admit":
					if got := q.admit(s.user, s.src, t0.Add(s.at)); got != s.want {
						t.Fatalf("step %d: admit(%s, %v) = %v, want %v", i, s.user, s.src, got, s.want)
					}
				case "created":
					q.created(s.user, s.src)
				case "failed":
					q.failed(s.src)
				case "deleted":
					q.deleted(s.user)
				}
			}
			for user, want := range tt.wantCount {
				if got := q.count(user); got != want {
					t.Errorf("count(%s) = %d, want %d", user, got, want)
				}
			}
		})
	}
}
