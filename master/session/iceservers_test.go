package session

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/shared/store"
	"github.com/chorus-rtc/chorus/shared/turncred"
)

func TestICEServers(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	turn := TURN{URLs: []string{"stun:turn.example:3478", "turn:turn.example:3478?transport=udp",
		"turns:turn.example:5349?transport=tcp"}, Secret: "s3cret", CredentialTTL: time.Hour}
	own := json.RawMessage(`[{"url":"turn:own.example:3478","username":"u","credential":"c"}]`)
	tests := []struct {
		name   string
		turn   TURN
		own    json.RawMessage
		want   int  // servers handed out
		minted bool // TURN entries carry a credential for the connection
	}{
		{name: "no TURN configured", turn: TURN{}, want: 0},
		{name: "no TURN configured, empty own list", turn: TURN{}, own: json.RawMessage(`[]`), want: 0},
		{name: "cluster TURN servers", turn: turn, want: 3, minted: true},
		{name: "cluster TURN servers, empty own list", turn: turn, own: json.RawMessage(`[]`), want: 3, minted: true},
		{name: "the connection's own servers win", turn: turn, own: own, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{TURN: tc.turn})
			raw := s.ICEServers(&store.Connection{ID: "con_A1", CustomIceServers: tc.own}, now)
			var got []iceServer
			if len(raw) > 0 {
				if err := json.Unmarshal(raw, &got); err != nil {
					t.Fatalf("%s: %v", raw, err)
				}
			}
			if len(got) != tc.want {
				t.Fatalf("%d servers (%s), want %d", len(got), raw, tc.want)
			}
			if !tc.minted {
				if tc.own != nil && tc.want > 0 && string(raw) != string(tc.own) {
					t.Fatalf("own servers rewritten: %s", raw)
				}
				return
			}
			for _, srv := range got {
				if srv.URL[:5] == "stun:" {
					if srv.Username != "" || srv.Credential != "" {
						t.Errorf("a STUN URL got a credential: %+v", srv)
					}
					continue
				}
				cid, err := turncred.Verify(tc.turn.Secret, srv.Username, srv.Credential, now.Add(59*time.Minute))
				if err != nil || cid != "con_A1" {
					t.Errorf("%s: credential %q/%q does not verify for the connection: %q %v", srv.URL, srv.Username, srv.Credential, cid, err)
				}
				if _, err := turncred.Verify(tc.turn.Secret, srv.Username, srv.Credential, now.Add(61*time.Minute)); err == nil {
					t.Errorf("%s: credential still valid after its lifetime", srv.URL)
				}
			}
		})
	}
}
