package participant_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/participant"
)

// TestServerURL: a participant whose token names an address it cannot reach
// (the cluster's public URL seen from inside its network) joins and
// publishes through ServerURL (its resumptions dial the same URL); a
// ServerURL that is not ws(s):// is refused.
func TestServerURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1})
	c.WaitMediaNodes(t, 1)
	createSession(t, c, "serverurl")
	st, body := restCall(t, c, "POST", "/openvidu/api/sessions/serverurl/connection", `{"role":"PUBLISHER"}`)
	if st != 200 {
		t.Fatalf("create connection: %d %s", st, body)
	}
	var conn struct{ Token string }
	if err := json.Unmarshal([]byte(body), &conn); err != nil {
		t.Fatal(err)
	}
	tok, err := url.Parse(conn.Token)
	if err != nil {
		t.Fatal(err)
	}
	reachable := "ws://" + tok.Host
	tok.Host = "127.0.0.1:1" // nothing listens there
	if _, err := participant.Join(ctx, participant.Config{Token: tok.String(), LoopbackOnly: true, NoResume: true}); err == nil {
		t.Fatal("joined through an unreachable token URL")
	}
	if _, err := participant.Join(ctx, participant.Config{Token: tok.String(), ServerURL: "http://" + strings.TrimPrefix(reachable, "ws://")}); err == nil ||
		!strings.Contains(err.Error(), "not a ws(s)://host URL") {
		t.Errorf("an http:// ServerURL: %v", err)
	}
	// The pending connection's token is single-use once joined: a new one.
	_, body = restCall(t, c, "POST", "/openvidu/api/sessions/serverurl/connection", `{"role":"PUBLISHER"}`)
	_ = json.Unmarshal([]byte(body), &conn)
	tok, _ = url.Parse(conn.Token)
	tok.Host = "127.0.0.1:1"
	p, err := participant.Join(ctx, participant.Config{Token: tok.String(), ServerURL: reachable, LoopbackOnly: true})
	if err != nil {
		t.Fatalf("join through ServerURL: %v", err)
	}
	defer p.Close()
	if p.ConnectionID() == "" || p.SessionID() != "serverurl" {
		t.Errorf("joined as %q in %q", p.ConnectionID(), p.SessionID())
	}
	if _, err := p.Publish(ctx, participant.PublishOptions{Audio: true}); err != nil {
		t.Errorf("publish after joining through ServerURL: %v", err)
	}
}
