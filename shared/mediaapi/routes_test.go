package mediaapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestClientReachesEveryRoute serves every Route* pattern on a ServeMux, as
// the media node does, and checks that each Client method lands on its route
// with the wildcards and the session query intact, ids with reserved
// characters included.
func TestClientReachesEveryRoute(t *testing.T) {
	type hit struct{ route, id, sid, session, moved string }
	hits := make(chan hit, 1)
	mux := http.NewServeMux()
	for _, r := range []string{RoutePublish, RouteSubscribe, RouteAnswer, RouteICE, RouteRelease,
		RouteReleaseSession, RouteEndpoints, RouteHealth} {
		mux.HandleFunc(r, func(w http.ResponseWriter, req *http.Request) {
			if req.Header.Get("Authorization") != "Bearer s3cret" {
				http.Error(w, "no secret", http.StatusUnauthorized)
				return
			}
			hits <- hit{route: r, id: req.PathValue("id"), sid: req.PathValue("sid"), session: req.URL.Query().Get("session"), moved: req.URL.Query().Get("moved")}
			_ = json.NewEncoder(w).Encode(map[string]any{})
		})
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := NewClient(srv.Client(), srv.URL+"/", "s3cret")
	ctx := context.Background()
	const id, sid = "str_CAM_a/b c?d", "ses 1/x"

	tests := []struct {
		name string
		call func() error
		want hit
	}{
		{"publish", func() error { _, err := c.Publish(ctx, PublishRequest{}); return err }, hit{route: RoutePublish}},
		{"subscribe", func() error { _, err := c.Subscribe(ctx, SubscribeRequest{}); return err }, hit{route: RouteSubscribe}},
		{"answer", func() error { return c.Answer(ctx, sid, id, "v=0") }, hit{route: RouteAnswer, id: id, session: sid}},
		{"ice", func() error { return c.AddICECandidate(ctx, id, ICECandidate{}) }, hit{route: RouteICE, id: id}},
		{"release", func() error { return c.Release(ctx, sid, id) }, hit{route: RouteRelease, id: id, session: sid}},
		{"release session", func() error { return c.ReleaseSession(ctx, sid) }, hit{route: RouteReleaseSession, sid: sid}},
		{"release moved session", func() error { return c.ReleaseMovedSession(ctx, sid) }, hit{route: RouteReleaseSession, sid: sid, moved: "true"}},
		{"endpoints", func() error { _, err := c.Endpoints(ctx); return err }, hit{route: RouteEndpoints}},
		{"health", func() error { _, err := c.Health(ctx); return err }, hit{route: RouteHealth}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err != nil {
				t.Fatalf("call: %v", err)
			}
			if got := <-hits; got != tc.want {
				t.Fatalf("served %+v, want %+v", got, tc.want)
			}
		})
	}
}
