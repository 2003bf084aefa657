//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// netNSDevConfig is the cluster startNetNSDev runs.
type netNSDevConfig struct {
	// ICETCP lets the media nodes offer ICE-TCP candidates.
	ICETCP bool
	// TURNServers is how many TURN servers participants get (0: none).
	TURNServers int
	// MediaNodes is how many media nodes run (0: one).
	MediaNodes int
	// Env is added to the cluster's environment.
	Env []string
}

// startNetNSDev runs `chorus dev` (one master, cfg's media nodes and TURN
// servers) reachable from the namespace: the proxy, the tokens' URL, the
// media nodes' UDP and ICE-TCP ports and the TURN servers are all on the
// root side of the veth pair, which the root namespace reaches too (it is
// one of its addresses).
func startNetNSDev(t *testing.T, ns *netNS, cfg netNSDevConfig) *devCluster {
	t.Helper()
	host := ns.HostIP.String()
	// Beyond loopback, chorus dev refuses a weak secret (as every role does).
	return startDev(t, devOptions{Args: []string{"--masters", "1", "--media-nodes", strconv.Itoa(max(cfg.MediaNodes, 1)), "--secret", "e2e-netns-4f8a1c2b9d7e",
		"--media-ip", host, "--listen-host", host, "--public-host", host,
		"--ice-tcp=" + strconv.FormatBool(cfg.ICETCP), "--turn-servers", strconv.Itoa(cfg.TURNServers)}, Env: cfg.Env})
}

// startNetNSPages starts a root-namespace browser and one inside ns, both
// treating the cluster's plain-HTTP origin as secure (getUserMedia needs
// it; only localhost is by default).
func startNetNSPages(t *testing.T, dc *devCluster, ns *netNS) (root, inside *pages) {
	t.Helper()
	args := []string{"--unsafely-treat-insecure-origin-as-secure=" + dc.URL}
	return startPagesWith(t, dc, pagesOptions{ChromiumArgs: args}),
		startPagesWith(t, dc, pagesOptions{NS: ns, ChromiumArgs: args})
}

// checkTransports checks that every peer connection of the pages uses a
// candidate pair of the protocol want with the media node at host, and
// returns the pairs for the log.
func checkTransports(t *testing.T, who string, p *pages, want, host string) string {
	t.Helper()
	tr := p.transports()
	raw, _ := json.Marshal(tr)
	n := 0
	for _, list := range tr {
		for _, pc := range list {
			n++
			if pc.Local == nil || pc.Remote == nil {
				t.Errorf("%s: %s peer connection of %s has no selected candidate pair (ICE %s)", who, pc.Kind, pc.StreamID, pc.ICEState)
				continue
			}
			if pc.Local.Protocol != want || pc.Remote.Protocol != want || pc.Remote.Address != host {
				t.Errorf("%s: %s peer connection of %s uses %+v <-> %+v, want %s to %s", who, pc.Kind, pc.StreamID, *pc.Local, *pc.Remote, want, host)
			}
			if want == "tcp" && pc.Remote.TCPType != "passive" {
				t.Errorf("%s: the media node's candidate is %q TCP, want passive", who, pc.Remote.TCPType)
			}
		}
	}
	if n != 2 {
		t.Errorf("%s: %d peer connections (want a publisher and a subscription): %s", who, n, raw)
	}
	return string(raw)
}

// TestICETCPBrowser is a browser whose network drops UDP: Chromium with
// openvidu-browser in a network namespace whose firewall drops every UDP
// packet, and another page in the root namespace, in one session. Both
// decode each other's video; the namespaced page's peer connections use
// TCP candidate pairs (getStats), the other's UDP (ICE-TCP's lower
// priority). Without ICE-TCP the namespaced page gets no media at all:
// the firewall is real.
func TestICETCPBrowser(t *testing.T) {
	t.Run("ice-tcp", func(t *testing.T) {
		ns := newNetNS(t, netNSConfig{DropUDP: true})
		dc := startNetNSDev(t, ns, netNSDevConfig{ICETCP: true})
		root, inside := startNetNSPages(t, dc, ns)
		sid := fmt.Sprintf("icetcp_%06d", rand.IntN(1e6))
		root.join(sid, 1)
		inside.join(sid, 1)
		inside.waitVideo(1, 45*time.Second)
		root.waitVideo(1, 45*time.Second)
		host := ns.HostIP.String()
		t.Logf("namespaced page: %s", checkTransports(t, "namespaced page", inside, "tcp", host))
		t.Logf("root page: %s", checkTransports(t, "root page", root, "udp", host))
		if d := ns.DroppedUDP(); d == 0 {
			t.Errorf("the namespace's firewall dropped no UDP packet: did the browser try UDP at all?\n%s", ns.Ruleset())
		} else {
			t.Logf("UDP packets dropped by the namespace's firewall: %d", d)
		}
		// Frames keep coming over TCP.
		before := inside.stats()
		time.Sleep(3 * time.Second)
		after := inside.stats()
		if len(before) != 1 || len(after) != 1 || len(after[0].Videos) != 1 || len(before[0].Videos) != 1 ||
			after[0].Videos[0].Frames <= before[0].Videos[0].Frames {
			t.Errorf("the namespaced page's frame counter stalled: %+v then %+v", before, after)
		}
		for _, tm := range inside.timings() {
			for conn, at := range tm.FirstFrames {
				t.Logf("namespaced page: join to first frame of %s: %d ms", conn, at-tm.JoinStartedAt)
			}
		}
		root.leave()
		inside.leave()
	})

	t.Run("ice-tcp-off", func(t *testing.T) {
		ns := newNetNS(t, netNSConfig{DropUDP: true})
		dc := startNetNSDev(t, ns, netNSDevConfig{})
		root, inside := startNetNSPages(t, dc, ns)
		sid := fmt.Sprintf("icetcpoff_%06d", rand.IntN(1e6))
		root.join(sid, 1)
		inside.join(sid, 1)
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			for _, pg := range append(inside.stats(), root.stats()...) {
				for _, v := range pg.Videos {
					if v.Frames > 0 {
						t.Fatalf("a video decoded frames with UDP dropped and no ICE-TCP: %+v (firewall:\n%s)", pg, ns.Ruleset())
					}
				}
			}
			time.Sleep(time.Second)
		}
		for _, list := range inside.transports() {
			for _, pc := range list {
				if pc.Local != nil {
					t.Errorf("the namespaced page selected %+v <-> %+v without ICE-TCP", *pc.Local, *pc.Remote)
				}
			}
		}
		if ns.DroppedUDP() == 0 {
			t.Errorf("no UDP dropped:\n%s", ns.Ruleset())
		}
		// Meanwhile the root page's publisher did connect, over UDP: the
		// cluster serves media, the firewall is what keeps the namespace out.
		published := false
		for _, list := range root.transports() {
			for _, pc := range list {
				published = published || pc.Kind == "publisher" && pc.Remote != nil && pc.Remote.Protocol == "udp"
			}
		}
		if !published {
			t.Error("the root page's publisher did not connect over UDP")
		}
		root.leave()
		inside.leave()
	})
}

// TestICETCPFirstFrame measures how long a browser takes from joining to
// its first decoded remote frame, over UDP and over ICE-TCP: the same
// namespaced Chromium, its firewall dropping UDP or not, joins a session
// where a root-namespace page already publishes. CHORUS_ICETCP_RUNS runs
// of each (default 1, alternating); CHORUS_ICETCP_REPORT appends one JSON
// line per run. Asserted: each run's transport, and a first frame within
// 10 s.
func TestICETCPFirstFrame(t *testing.T) {
	runs := 1
	if v, err := strconv.Atoi(os.Getenv("CHORUS_ICETCP_RUNS")); err == nil && v > 0 {
		runs = v
	}
	ns := newNetNS(t, netNSConfig{})
	dc := startNetNSDev(t, ns, netNSDevConfig{ICETCP: true})
	root, inside := startNetNSPages(t, dc, ns)
	host := ns.HostIP.String()

	type result struct {
		Mode          string `json:"mode"`
		Run           int    `json:"run"`
		JoinToFrameMS int64  `json:"joinToFirstFrameMs"`    // namespaced page: join() to its first frame of the root page's video
		PublishToMS   int64  `json:"publishToFirstFrameMs"` // its publish() to the root page's first frame of its video
		ConnectMS     int64  `json:"connectMs"`             // its join() to the WebSocket session (no media)
		Steps         string `json:"joinSteps"`             // the join to first frame, step by step (joinTimings.joinSteps)
		WarmUp        bool   `json:"warmUp,omitempty"`
	}
	var results []result
	measure := func(mode string, run int, warmUp bool) {
		t.Helper()
		if mode == "tcp" {
			ns.SetFirewall(netNSConfig{DropUDP: true})
		} else {
			ns.SetFirewall(netNSConfig{})
		}
		sid := fmt.Sprintf("firstframe_%s_%d_%06d", mode, run, rand.IntN(1e6))
		rootIDs := root.join(sid, 1)
		insideIDs := inside.join(sid, 1)
		inside.waitVideo(1, 30*time.Second)
		root.waitVideo(1, 30*time.Second)
		checkTransports(t, mode+" run "+strconv.Itoa(run), inside, mode, host)
		in, out := inside.timings()[insideIDs[0]], root.timings()[rootIDs[0]]
		r := result{Mode: mode, Run: run, WarmUp: warmUp,
			JoinToFrameMS: in.FirstFrames[rootIDs[0]] - in.JoinStartedAt,
			PublishToMS:   out.FirstFrames[insideIDs[0]] - in.PublishStartedAt,
			ConnectMS:     in.ConnectedAt - in.JoinStartedAt, Steps: in.joinSteps(rootIDs[0])}
		if in.FirstFrames[rootIDs[0]] == 0 || out.FirstFrames[insideIDs[0]] == 0 || r.JoinToFrameMS > 10000 || r.PublishToMS > 10000 {
			t.Errorf("%s run %d: first frames too late or missing: %+v (timings %+v, %+v)", mode, run, r, in, out)
		}
		root.reset()
		inside.reset()
		if !warmUp {
			results = append(results, r)
		}
		raw, _ := json.Marshal(r)
		t.Logf("%s", raw)
		if f := os.Getenv("CHORUS_ICETCP_REPORT"); f != "" {
			fh, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err == nil {
				_, _ = fh.Write(append(raw, '\n'))
				_ = fh.Close()
			}
		}
	}
	measure("udp", 0, true) // Chromium's first peer connections are slower: not counted
	for run := 1; run <= runs; run++ {
		for _, mode := range []string{"udp", "tcp"} {
			measure(mode, run, false)
		}
	}
	for _, mode := range []string{"udp", "tcp"} {
		var join, pub []int64
		for _, r := range results {
			if r.Mode == mode {
				join, pub = append(join, r.JoinToFrameMS), append(pub, r.PublishToMS)
			}
		}
		t.Logf("%s: join to first frame %s; publish to first remote frame %s", mode, summary(join), summary(pub))
	}
}

// summary is "median m ms (min-max, n runs)".
func summary(v []int64) string {
	if len(v) == 0 {
		return "no run"
	}
	s := slices.Clone(v)
	slices.Sort(s)
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.FormatInt(x, 10)
	}
	median := s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("median %d ms (%d-%d, %d runs: %s)", median, s[0], s[len(s)-1], len(s), strings.Join(parts, ", "))
}

// TestTURNBrowser is a browser whose network drops UDP and whose media
// node offers no ICE-TCP: Chromium with openvidu-browser in the namespace
// gets media only through the cluster's TURN server, with the credential
// joinRoom's customIceServers carries; every peer connection of its uses a
// relayed local candidate reaching the TURN server over the row's protocol
// (getStats: candidateType relay, relayProtocol).
//   - tcp: TURN over TCP, iceTransportPolicy "relay" given through
//     openvidu-browser's OV.setAdvancedConfiguration({rtcConfiguration});
//   - tls: TURN over TLS, the only way out: the namespace lets TCP out to
//     the proxy's port and the TURN server's TLS port only.
func TestTURNBrowser(t *testing.T) {
	tests := []struct {
		name   string
		policy string // iceTransportPolicy
		// tlsOnly restricts outbound TCP to the proxy and the TLS port.
		tlsOnly       bool
		relayProtocol string
	}{
		{name: "tcp", policy: "relay", relayProtocol: "tcp"},
		{name: "tls", tlsOnly: true, relayProtocol: "tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := newNetNS(t, netNSConfig{DropUDP: true})
			dc := startNetNSDev(t, ns, netNSDevConfig{TURNServers: 1})
			tlsPort := 0
			for _, u := range dc.TurnURLs {
				if rest, ok := strings.CutPrefix(u, "turns:"); ok {
					rest, _, _ = strings.Cut(rest, "?")
					_, p, _ := strings.Cut(rest, ":")
					tlsPort, _ = strconv.Atoi(p)
				}
			}
			if tlsPort == 0 {
				t.Fatalf("chorus dev announced no TURN over TLS: %v", dc.TurnURLs)
			}
			if tt.tlsOnly {
				_, proxyPort, _ := strings.Cut(strings.TrimPrefix(dc.URL, "http://"), ":")
				pp, _ := strconv.Atoi(proxyPort)
				ns.SetFirewall(netNSConfig{DropUDP: true, AllowTCPPorts: []int{pp, tlsPort}})
			}
			args := []string{"--unsafely-treat-insecure-origin-as-secure=" + dc.URL}
			root := startPagesWith(t, dc, pagesOptions{ChromiumArgs: args})
			inside := startPagesWith(t, dc, pagesOptions{NS: ns, ChromiumArgs: append(args, turnTLSChromiumArgs...), ICETransportPolicy: tt.policy})
			sid := fmt.Sprintf("turn%s_%06d", tt.name, rand.IntN(1e6))
			root.join(sid, 1)
			inside.join(sid, 1)
			inside.waitVideo(1, 45*time.Second)
			root.waitVideo(1, 45*time.Second)
			n := 0
			tr := inside.transports()
			raw, _ := json.Marshal(tr)
			for _, list := range tr {
				for _, pc := range list {
					n++
					if pc.Local == nil || pc.Local.CandidateType != "relay" || pc.Local.RelayProtocol != tt.relayProtocol {
						t.Errorf("namespaced page: %s peer connection of %s uses %+v, want a relayed local candidate over %s", pc.Kind, pc.StreamID, pc.Local, tt.relayProtocol)
					}
				}
			}
			if n != 2 {
				t.Errorf("namespaced page: %d peer connections, want 2", n)
			}
			t.Logf("namespaced page: %s", raw)
			for _, tm := range inside.timings() {
				for conn, at := range tm.FirstFrames {
					t.Logf("TURN/%s: namespaced page: join to first frame of %s: %d ms", tt.name, conn, at-tm.JoinStartedAt)
				}
			}
			if ns.DroppedUDP() == 0 {
				t.Errorf("the namespace's firewall dropped no UDP packet:\n%s", ns.Ruleset())
			}
			root.leave()
			inside.leave()
		})
	}
}

// turnTLSChromiumArgs are the Chromium flags the TURN over TLS tests need
// for chorus dev's self-signed TURN certificate: Chromium checks a turns:
// server's certificate (without the flag the tls row gets no media).
var turnTLSChromiumArgs = []string{"--ignore-certificate-errors"}
