//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

func TestOpenViduNodeClient(t *testing.T) {
	dc := startDev(t)
	dc.node(t, "rest.cjs")
}

func TestOpenViduBrowsers(t *testing.T) {
	dc := startDev(t)
	dc.node(t, "browsers.cjs", "CHORUS_PAGES=3")
	dc.node(t, "compat.cjs")
	assertNoSessionKeys(t, dc)
}

// TestPionParticipantsThroughProxy: Go participants (pion) publish synthetic
// media and subscribe to each other through the proxy; every subscription
// counts its RTP packets.
func TestPionParticipantsThroughProxy(t *testing.T) {
	dc := startDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	restCall(t, dc, "POST", "/openvidu/api/sessions", `{"customSessionId":"pion"}`)

	const n = 3
	var ps []*participant.Participant
	for i := 0; i < n; i++ {
		var conn protocol.Connection
		if err := json.Unmarshal(restCall(t, dc, "POST", "/openvidu/api/sessions/pion/connection", `{"role":"PUBLISHER"}`), &conn); err != nil {
			t.Fatal(err)
		}
		p, err := participant.Join(ctx, participant.Config{Token: conn.Token, LoopbackOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pub, err := p.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
		if err != nil {
			t.Fatal(err)
		}
		go pub.SendSynthetic(ctx, participant.DefaultVideo)
		ps = append(ps, p)
	}
	var subs []*participant.Subscription
	for i, p := range ps {
		streams, err := p.WaitForStreams(ctx, n-1)
		if err != nil {
			t.Fatalf("participant %d sees %v: %v", i, streams, err)
		}
		for _, s := range streams {
			sub, err := p.Subscribe(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, sub)
		}
	}
	time.Sleep(5 * time.Second)
	for _, s := range subs {
		st := s.Stats()
		stats, _ := json.Marshal(st)
		t.Logf("%s: %s", s.StreamID, stats)
		if st.VideoPackets < 200 || st.AudioPackets < 100 {
			t.Errorf("subscription to %s received too little: %s", s.StreamID, stats)
		}
		if st.Lost > st.VideoPackets/100 {
			t.Errorf("subscription to %s lost %d packets", s.StreamID, st.Lost)
		}
	}
	for _, p := range ps {
		if err := p.Leave(ctx); err != nil {
			t.Error(err)
		}
	}
	assertNoSessionKeys(t, dc)
}

func restCall(t *testing.T, dc *devCluster, method, path, body string) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, dc.URL+path, strings.NewReader(body))
	req.SetBasicAuth("OPENVIDUAPP", dc.Secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return raw
}

// assertNoSessionKeys waits until the cluster's Redis holds nothing but the
// registry, the cluster's event stream and tombstones: no session,
// connection, outbox or event left behind.
func assertNoSessionKeys(t *testing.T, dc *devCluster) {
	t.Helper()
	rdb := dc.redisClient(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Session keys are hash-tagged {sid}; idempotency records
		// (chorus:e2e:idem:*) expire by themselves.
		keys, err := redisKeys(context.Background(), rdb, "chorus:e2e:{*")
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, k := range keys {
			if !strings.HasSuffix(k, ":tomb") && !strings.HasPrefix(k, "chorus:e2e:{cluster}") && !strings.HasPrefix(k, "chorus:e2e:{masters}") {
				left = append(left, k)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var dump bytes.Buffer
			for _, k := range left {
				fmt.Fprintf(&dump, "%s (%s)\n", k, rdb.Type(context.Background(), k).Val())
			}
			t.Fatalf("keys left behind:\n%s", dump.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
