package participant_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/chorus-rtc/chorus/clustertest"
	"github.com/chorus-rtc/chorus/sdk/participant"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/turn"
)

// TestRelayOnlyParticipants: participants that may use relayed candidates
// only (iceTransportPolicy relay) get media through the cluster's TURN
// server, over UDP and over TCP to it, with the credentials masters hand
// them in joinRoom's customIceServers; and the server relays to the media
// node because the node's heartbeat announced its address. Each peer
// connection connects within maxRelayedNegotiation: a relay-only
// participant does not hold its working relayed pair back (pion's relay
// acceptance wait, 2 s, which every media recovery paid).
func TestRelayOnlyParticipants(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const secret = "turn-secret"
			peers := turn.NewPeerSet()
			cfg := turn.DefaultConfig()
			cfg.Secret, cfg.Peers = secret, peers
			cfg.ListenIP, cfg.RelayIP = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1")
			cfg.UDPPort, cfg.TCPPort, cfg.RelayPortMin, cfg.RelayPortMax = 0, 0, 0, 0
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			srv, err := turn.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			port := srv.Addrs().UDP.Port()
			if transport == "tcp" {
				port = srv.Addrs().TCP.Port()
			}
			c := clustertest.Start(t, clustertest.Options{Masters: 1, MediaNodes: 1, Configure: func(cc *config.Config) {
				cc.Turn.URLs = []string{fmt.Sprintf("turn:127.0.0.1:%d?transport=%s", port, transport)}
				cc.Turn.Secret, cc.Turn.CredentialTTL = secret, time.Hour
			}})
			c.WaitMediaNodes(t, 1)
			runCtx, stop := context.WithCancel(context.Background())
			served := make(chan error, 2)
			go func() { served <- srv.Run(runCtx) }()
			go func() {
				served <- peers.Refresh(runCtx, 200*time.Millisecond, func(ctx context.Context) ([]netip.AddrPort, error) {
					nodes, err := c.Store.MediaNodes(ctx)
					return turn.NodeAddrs(nodes), err
				}, nil)
			}()
			defer func() {
				stop()
				for range 2 {
					if err := <-served; err != nil {
						t.Errorf("turn: %v", err)
					}
				}
			}()
			waitFor(t, "the media node among the relay's peers", func() bool { return len(peers.Addrs()) == 1 })

			sid := "relay" + transport
			createSession(t, c, sid)
			pubber := joinRelayOnly(t, ctx, c, sid)
			viewer := joinRelayOnly(t, ctx, c, sid)
			if got := pubber.ICEServers(); len(got) != 1 || got[0].Username == "" {
				t.Fatalf("joinRoom handed %+v", got)
			}
			start := time.Now()
			pub, err := pubber.Publish(ctx, participant.PublishOptions{Audio: true, Video: true})
			if err != nil {
				t.Fatal(err)
			}
			published := time.Since(start)
			go pub.SendSynthetic(ctx, participant.DefaultVideo)
			start = time.Now()
			sub, err := viewer.Subscribe(ctx, pub.StreamID)
			if err != nil {
				t.Fatal(err)
			}
			subscribed := time.Since(start)
			t.Logf("relayed publish connected in %v, subscription in %v", published, subscribed)
			if published > maxRelayedNegotiation || subscribed > maxRelayedNegotiation {
				t.Errorf("relayed publish took %v, subscription %v to connect, want under %v each", published, subscribed, maxRelayedNegotiation)
			}
			t.Cleanup(func() {
				if !t.Failed() {
					return
				}
				st := srv.Stats()
				pp, _ := pub.CandidatePair()
				sp, _ := sub.CandidatePair()
				t.Logf("turn: %d allocations, %d relayed, %d dropped by filter, %d by bandwidth, %d auth failures, %d permission denials; peers %v; pairs %+v %+v; sub %+v",
					st.Allocations.Load(), st.RelayedPackets.Load(), st.DroppedByFilter.Load(), st.DroppedByBandwidth.Load(), st.AuthFailures.Load(),
					st.PermissionDenials.Load(), peers.Addrs(), pp, sp, sub.Stats())
			})
			waitFor(t, "relayed video", func() bool { return sub.Stats().VideoPackets > 50 })
			for name, pair := range map[string]func() (*webrtc.ICECandidatePair, error){"publisher": pub.CandidatePair, "subscriber": sub.CandidatePair} {
				p, err := pair()
				if err != nil || p.Local.Typ != webrtc.ICECandidateTypeRelay {
					t.Errorf("%s uses %v (%v), want a relayed local candidate", name, p, err)
				}
			}
			if n := srv.Stats().Allocations.Load(); n == 0 {
				t.Error("the TURN server made no allocation")
			}
			pubber.Close()
			viewer.Close()
		})
	}
}

// maxRelayedNegotiation bounds a relay-only publish or subscription, from
// the call to a connected peer connection, on loopback: measured 0.22 s
// (2.03 s with pion's 2 s relay acceptance wait); the bound leaves room for
// a loaded machine and stays below that wait.
const maxRelayedNegotiation = 1500 * time.Millisecond

func joinRelayOnly(t *testing.T, ctx context.Context, c *clustertest.Cluster, sid string) *participant.Participant {
	t.Helper()
	st, body := restCall(t, c, "POST", "/openvidu/api/sessions/"+sid+"/connection", `{"role":"PUBLISHER"}`)
	if st != 200 {
		t.Fatalf("create connection: %d %s", st, body)
	}
	var conn struct{ Token string }
	if err := json.Unmarshal([]byte(body), &conn); err != nil || conn.Token == "" {
		t.Fatalf("connection %s: %v", body, err)
	}
	token := conn.Token
	p, err := participant.Join(ctx, participant.Config{Token: token, LoopbackOnly: true, RelayOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func createSession(t *testing.T, c *clustertest.Cluster, id string) {
	t.Helper()
	if st, body := restCall(t, c, "POST", "/openvidu/api/sessions", fmt.Sprintf(`{"customSessionId":%q}`, id)); st != 200 {
		t.Fatalf("create session: %d %s", st, body)
	}
}

func restCall(t *testing.T, c *clustertest.Cluster, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, c.MasterURLs[0]+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("OPENVIDUAPP", clustertest.Secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 30 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
