package rediscluster

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

// Replies as Redis 7.0's INFO replication gives them.
const (
	primaryInSync = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n" +
		"slave0:ip=127.0.0.1,port=30082,state=online,offset=4242,lag=0\r\nmaster_repl_offset:4242\r\n"
	primaryBehind = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n" +
		"slave0:ip=127.0.0.1,port=30082,state=online,offset=4100,lag=1\r\nmaster_repl_offset:4242\r\n"
	primarySyncing = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n" +
		"slave0:ip=127.0.0.1,port=30082,state=wait_bgsave,offset=0,lag=0\r\nmaster_repl_offset:14\r\n"
	primaryAlone = "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:0\r\n"
)

func TestReplicaStates(t *testing.T) {
	for _, tt := range []struct {
		name       string
		info       string
		notOnline  bool
		lagPresent bool
	}{
		{"in sync", primaryInSync, false, false},
		{"behind", primaryBehind, false, true},
		{"full sync under way", primarySyncing, true, true},
		{"no replica", primaryAlone, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := replicaNotOnline(tt.info); got != tt.notOnline {
				t.Errorf("replicaNotOnline = %v, want %v", got, tt.notOnline)
			}
			if got := replicaLag(tt.info); (got != "") != tt.lagPresent {
				t.Errorf("replicaLag = %q, want a lag: %v", got, tt.lagPresent)
			}
		})
	}
}

func TestPrimaryOfSlot(t *testing.T) {
	shards := []redis.ClusterShard{
		{Slots: []redis.SlotRange{{Start: 0, End: 5460}}, Nodes: []redis.Node{
			{IP: "127.0.0.1", Port: 7001, Role: "replica", Health: "online"},
			{IP: "127.0.0.1", Port: 7000, Role: "master", Health: "online"},
		}},
		{Slots: []redis.SlotRange{{Start: 5461, End: 10922}}, Nodes: []redis.Node{
			{IP: "127.0.0.1", Port: 7002, Role: "master", Health: "failed"},
		}},
	}
	for _, tt := range []struct {
		slot int64
		want string
	}{
		{0, "127.0.0.1:7000"}, {5460, "127.0.0.1:7000"}, // the primary, not the replica listed first
		{5461, ""},  // its primary failed: nobody serves it until a replica is promoted
		{16383, ""}, // not assigned
	} {
		if got := primaryOf(shards, tt.slot); got != tt.want {
			t.Errorf("primaryOf(%d) = %q, want %q", tt.slot, got, tt.want)
		}
	}
}
