package session

import (
	"testing"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

func TestChooseNode(t *testing.T) {
	tests := []struct {
		name     string
		nodes    []store.MediaNodeInfo
		sessions map[protocol.NodeID]int64
		want     protocol.NodeID
	}{
		{"least loaded", []store.MediaNodeInfo{{ID: "a", Load: 60}, {ID: "b", Load: 20}}, nil, "b"},
		{"near tie: fewer sessions", []store.MediaNodeInfo{{ID: "a", Load: 1.0}, {ID: "b", Load: 1.5}}, map[protocol.NodeID]int64{"a": 3, "b": 1}, "b"},
		{"exact tie: id", []store.MediaNodeInfo{{ID: "b", Load: 0}, {ID: "a", Load: 0}}, nil, "a"},
		{"load beats session count", []store.MediaNodeInfo{{ID: "a", Load: 50}, {ID: "b", Load: 10}}, map[protocol.NodeID]int64{"b": 9}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := chooseNode(tt.nodes, tt.sessions); got != tt.want {
				t.Errorf("chose %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseToken(t *testing.T) {
	tests := []struct {
		token, sid, want string
		ok               bool
	}{
		{"wss://h:4443?sessionId=s1&token=tok_abc", "s1", "tok_abc", true},
		{"ws://localhost:4443/?sessionId=s1&token=tok_abc&edition=pro", "s1", "tok_abc", true},
		{"tok_abc", "s1", "tok_abc", true},
		{"wss://h?sessionId=other&token=tok_abc", "s1", "", false},
		{"wss://h?sessionId=s1", "s1", "", false},
		{"garbage", "s1", "", false},
	}
	for _, tt := range tests {
		got, ok := ParseToken(tt.token, protocol.SessionID(tt.sid))
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseToken(%q) = %q, %v", tt.token, got, ok)
		}
	}
}
