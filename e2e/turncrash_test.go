//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/sdk/participant"
)

// TestRelayedParticipantsSurviveCrashes: pion participants that may use
// relayed candidates only (RelayOnly: iceTransportPolicy "relay", through
// the two TURN servers of joinRoom's customIceServers) publish and
// subscribe to each other on media_1. SIGKILL, in one cluster each:
//   - turn: the TURN replica most of their subscriptions relay through.
//     Their ICE fails, their media recovery gathers relayed candidates
//     again, from the replica still alive, which they all use afterwards;
//   - media: the media node. The session migrates to media_2 and the
//     participants reach it through the same TURN servers.
//
// Media comes back within maxRelayedPionRecoveryMS after the replica's
// crash (the participants' ICE must notice it), within maxPionRecoveryMS
// after the node's (the server tells them to re-publish), on the same
// connection ids, nobody evicted. The gaps
// go to the file CHORUS_TURN_CRASH_REPORT names (BENCHMARKS.md).
func TestRelayedParticipantsSurviveCrashes(t *testing.T) {
	for _, victim := range []string{"turn", "media"} {
		t.Run(victim, func(t *testing.T) {
			dc := startDev(t, devOptions{Args: []string{"--turn-servers", "2"}})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ps, subs := pionMeshWith(t, ctx, dc, "ses_relayed_"+victim, "media_1", 3,
				participant.Config{LoopbackOnly: true, RelayOnly: true})
			ids := map[string]bool{}
			for _, p := range ps {
				ids[p.ConnectionID()] = true
			}
			waitPionMedia(t, subs, time.Now().Add(-time.Second), 20*time.Second)
			time.Sleep(time.Second) // steady media before the crash

			// Which replica each subscription relays through.
			turnPIDs := map[int]string{dc.pid(t, "turn_1"): "turn_1", dc.pid(t, "turn_2"): "turn_2"}
			using := relayReplicas(t, subs, turnPIDs)
			t.Logf("before: subscriptions relay through %v", using)
			kill, killedAt := killVictim(t, dc, victim, using)
			waitPionMedia(t, subs, killedAt.Add(time.Second), 30*time.Second)
			time.Sleep(time.Second)
			var gaps []int64
			worst := int64(0)
			for _, s := range subs {
				g := s.Stats().MaxGap.Milliseconds()
				gaps = append(gaps, g)
				worst = max(worst, g)
			}
			bound := int64(maxRelayedPionRecoveryMS)
			if victim == "media" {
				bound = maxPionRecoveryMS // told to re-publish, as unrelayed ones
			}
			t.Logf("SIGKILL %s: media gaps %v ms (bound %d)", kill, gaps, bound)
			if worst > bound {
				t.Errorf("a subscription's media stopped for %d ms after SIGKILL %s (bound %d ms)", worst, kill, bound)
			}
			for _, p := range ps {
				if !ids[p.ConnectionID()] {
					t.Errorf("participant has a new connection id %s", p.ConnectionID())
				}
			}
			var sess struct {
				Connections struct {
					Content []struct {
						ConnectionID string `json:"connectionId"`
					} `json:"content"`
				} `json:"connections"`
			}
			if err := json.Unmarshal(restCall(t, dc, "GET", "/openvidu/api/sessions/ses_relayed_"+victim, ""), &sess); err != nil {
				t.Fatal(err)
			}
			if len(sess.Connections.Content) != len(ids) {
				t.Errorf("the session has %d connections, want the %d participants'", len(sess.Connections.Content), len(ids))
			}
			for _, c := range sess.Connections.Content {
				if !ids[c.ConnectionID] {
					t.Errorf("the session has connection %s, not one of the participants'", c.ConnectionID)
				}
			}
			delete(turnPIDs, dc.pid(t, kill))
			after := relayReplicas(t, subs, turnPIDs)
			t.Logf("after: subscriptions relay through %v", after)
			if victim == "turn" {
				for i, r := range after {
					if r == kill || r == "" {
						t.Errorf("subscription %d relays through %q after %s died", i, r, kill)
					}
				}
			}
			appendTURNCrashReport(map[string]any{"killed": kill, "gaps_ms": gaps, "max_ms": worst})
		})
	}
}

// appendTURNCrashReport appends v as one JSON line to the file
// CHORUS_TURN_CRASH_REPORT names (BENCHMARKS.md), if it is set.
func appendTURNCrashReport(v any) {
	f := os.Getenv("CHORUS_TURN_CRASH_REPORT")
	if f == "" {
		return
	}
	raw, _ := json.Marshal(v)
	if fh, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
		_, _ = fh.Write(append(raw, '\n'))
		_ = fh.Close()
	}
}

// maxRelayedPionRecoveryMS bounds a relayed pion participant's media gap
// after a TURN replica crash: BENCHMARKS.md measured 2.9-3.7 s, x1.25,
// within the 5 s.
const maxRelayedPionRecoveryMS = 4600

// killVictim SIGKILLs what a crash test names: "media" kills media_1;
// "turn" the TURN replica most of using (the replica each peer connection
// relays through) names, turn_1 on a tie. It returns the node's id and the
// time of the kill.
func killVictim(t *testing.T, dc *devCluster, victim string, using []string) (string, time.Time) {
	t.Helper()
	kill := "media_1"
	if victim == "turn" {
		kill = "turn_1"
		if count(using, "turn_2") > count(using, "turn_1") {
			kill = "turn_2"
		}
	}
	killedAt := time.Now()
	if err := syscall.Kill(dc.pid(t, kill), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return kill, killedAt
}

func count(list []string, v string) int {
	n := 0
	for _, x := range list {
		if x == v {
			n++
		}
	}
	return n
}

// relayReplicas names, for each subscription, the TURN replica (of pids,
// pid -> node id) whose relay socket its selected local candidate is: the
// process holding the UDP socket of the candidate's port. Each candidate
// must be a relayed one.
func relayReplicas(t *testing.T, subs []*participant.Subscription, pids map[int]string) []string {
	t.Helper()
	out := make([]string, len(subs))
	for i, s := range subs {
		pair, err := s.CandidatePair()
		if err != nil {
			t.Fatalf("subscription %d: %v", i, err)
		}
		if pair.Local.Typ.String() != "relay" {
			t.Fatalf("subscription %d uses %s, want a relayed local candidate", i, pair)
		}
		out[i] = udpPortOwner(t, int(pair.Local.Port), pids)
	}
	return out
}

// udpPortOwner returns the id (pids: pid -> id) of the process holding the
// UDP socket bound to port, from /proc; "" when none of them does.
func udpPortOwner(t *testing.T, port int, pids map[int]string) string {
	t.Helper()
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); ok && err == nil && int(p) == port {
				inodes[fields[9]] = true
			}
		}
		_ = f.Close()
	}
	for pid, id := range pids {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			link, err := os.Readlink(fd)
			if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok && inodes[strings.TrimSuffix(inode, "]")] {
				return id
			}
		}
	}
	return ""
}

// TestRelayedBrowserSurvivesCrashes is TestRelayedParticipantsSurviveCrashes
// for openvidu-browser: a Chromium page in a network namespace that drops
// UDP, relay-only (iceTransportPolicy "relay") through the two TURN servers
// of joinRoom's customIceServers, and a page in the root namespace, in one
// session on media_1, each decoding the other's video. SIGKILL, in one
// cluster each:
//   - turn: the TURN replica most of the namespaced page's peer connections
//     relay through; afterwards all of them relay through the other one;
//   - media: media_1; the session moves to media_2, still relayed.
//
// Either way the namespaced page's video, both directions, comes back, on
// the same connection ids, nobody leaving: within issue 13's 8 s for
// openvidu-browser after the replica's crash, within the unrelayed
// browsers' bound (maxBrowserRecoveryMS) after the media node's. The gaps (from the pages' frame
// logs) go to CHORUS_TURN_CRASH_REPORT's file (BENCHMARKS.md).
func TestRelayedBrowserSurvivesCrashes(t *testing.T) {
	tests := []struct {
		victim string
		// boundMS bounds the video gaps.
		boundMS int64
	}{
		{victim: "turn", boundMS: maxRelayedBrowserRecoveryMS},
		// Not the 8 s: measured 7.7-8.7 s, of which Chrome takes
		// 7.5-7.7 s to report the relayed page's ICE disconnected (its
		// floor); the server's share after that is bounded below
		// (maxBrowserAfterICEMS, measured 0.57-1.24 s).
		{victim: "media", boundMS: maxBrowserRecoveryMS},
	}
	for _, tt := range tests {
		victim := tt.victim
		t.Run(victim, func(t *testing.T) {
			ns := newNetNS(t, netNSConfig{DropUDP: true})
			dc := startNetNSDev(t, ns, netNSDevConfig{TURNServers: 2, MediaNodes: 2})
			if n := len(dc.TurnURLs); n < 2 {
				t.Fatalf("chorus dev announced TURN URLs %v, want both servers'", dc.TurnURLs)
			}
			args := []string{"--unsafely-treat-insecure-origin-as-secure=" + dc.URL}
			root := startPagesWith(t, dc, pagesOptions{ChromiumArgs: args})
			inside := startPagesWith(t, dc, pagesOptions{NS: ns, ChromiumArgs: append(args, turnTLSChromiumArgs...), ICETransportPolicy: "relay"})
			sid := fmt.Sprintf("relayedcrash_%s_%06d", victim, rand.IntN(1e6))
			ids := map[string]bool{}
			for _, id := range append(root.joinOn(sid, 1, "media_1"), inside.joinOn(sid, 1, "media_1")...) {
				ids[id] = true
			}
			inside.waitVideo(1, 45*time.Second)
			root.waitVideo(1, 45*time.Second)
			time.Sleep(2 * time.Second) // steady media before the crash

			turnPIDs := map[int]string{dc.pid(t, "turn_1"): "turn_1", dc.pid(t, "turn_2"): "turn_2"}
			using := pageRelayReplicas(t, inside, turnPIDs)
			t.Logf("before: the namespaced page's peer connections relay through %v", using)
			if slices.Contains(using, "") || len(using) != 2 {
				t.Fatalf("the namespaced page's peer connections relay through %v, want a TURN replica for each of its 2", using)
			}
			kill, killedAt := killVictim(t, dc, victim, using)
			since := killedAt.Add(-500 * time.Millisecond)
			waitPagesVideoBack(t, killedAt, 30*time.Second, root, inside)
			time.Sleep(time.Second)
			var gaps []int64
			worst := int64(0)
			for _, pg := range []*pages{root, inside} {
				for _, vs := range pg.gaps(since) {
					for _, v := range vs {
						gaps = append(gaps, v.MaxGapMS)
						worst = max(worst, v.MaxGapMS)
					}
				}
			}
			var events []string
			for _, pg := range []*pages{root, inside} {
				for _, page := range pg.stats() {
					if !ids[page.ConnectionID] {
						t.Errorf("a page has a new connection id %s", page.ConnectionID)
					}
					if types := eventTypes(page); strings.Contains(types, "streamDestroyed") || strings.Contains(types, "sessionDisconnected") {
						t.Errorf("page %s saw the crash: %s", page.ConnectionID, types)
					}
					for _, e := range page.Events {
						if e.At >= killedAt.UnixMilli() {
							events = append(events, fmt.Sprintf("%s %s:%s@+%dms", page.ConnectionID, e.Type, e.Detail, e.At-killedAt.UnixMilli()))
						}
					}
				}
			}
			t.Logf("SIGKILL %s: video gaps (root page, namespaced page) %v ms (bound %d); page events: %v", kill, gaps, tt.boundMS, events)
			if len(gaps) != 2 {
				t.Errorf("%d remote videos on the pages, want 2", len(gaps))
			}
			if worst > tt.boundMS {
				t.Errorf("a page's video stopped for %d ms after SIGKILL %s (bound %d ms)", worst, kill, tt.boundMS)
			}
			report := map[string]any{"client": "browser", "killed": kill, "gaps_ms": gaps, "max_ms": worst}
			if victim == "media" {
				// Chrome's own detection is the floor (BENCHMARKS.md);
				// the server's share is what follows it.
				var noticed, afterICE int64
				for _, at := range iceBreaks(killedAt, root, inside) {
					noticed = max(noticed, at-killedAt.UnixMilli())
				}
				for _, r := range browserRecoveries(t, killedAt, root, inside) {
					afterICE = max(afterICE, r)
				}
				report["ice_noticed_ms"], report["after_ice_ms"] = noticed, afterICE
				t.Logf("Chrome reported the publishers' ICE disconnected up to %d ms after the kill; video back up to %d ms after that", noticed, afterICE)
				if afterICE > maxBrowserAfterICEMS {
					t.Errorf("video back %d ms after its publisher's ICE broke, want within %d ms", afterICE, maxBrowserAfterICEMS)
				}
			}
			var sess struct {
				MediaNodeID string `json:"mediaNodeId"`
				Connections struct {
					Content []struct {
						ConnectionID string `json:"connectionId"`
					} `json:"content"`
				} `json:"connections"`
			}
			if err := json.Unmarshal(restCall(t, dc, "GET", "/openvidu/api/sessions/"+sid, ""), &sess); err != nil {
				t.Fatal(err)
			}
			if len(sess.Connections.Content) != len(ids) {
				t.Errorf("the session has %d connections, want the %d pages'", len(sess.Connections.Content), len(ids))
			}
			for _, c := range sess.Connections.Content {
				if !ids[c.ConnectionID] {
					t.Errorf("the session has connection %s, not one of the pages'", c.ConnectionID)
				}
			}
			if want := map[string]string{"turn": "media_1", "media": "media_2"}[victim]; sess.MediaNodeID != want {
				t.Errorf("the session is on %q after SIGKILL %s, want %s", sess.MediaNodeID, kill, want)
			}
			delete(turnPIDs, dc.pid(t, kill))
			after := pageRelayReplicas(t, inside, turnPIDs)
			t.Logf("after: the namespaced page's peer connections relay through %v", after)
			for i, r := range after {
				if r == "" || r == kill {
					t.Errorf("peer connection %d of the namespaced page relays through %q after SIGKILL %s", i, r, kill)
				}
			}
			appendTURNCrashReport(report)
			root.leave()
			inside.leave()
		})
	}
}

// maxRelayedBrowserRecoveryMS bounds a relayed browser's video gap after a
// TURN replica or media node crash: issue 13's bound for openvidu-browser.
const maxRelayedBrowserRecoveryMS = 8000

// pageRelayReplicas names, for each peer connection of the pages (publisher
// first, then subscriptions, as transports lists them), the TURN replica
// (of pids, pid -> node id) whose relay socket its selected local candidate
// is (udpPortOwner). Each must be a relayed candidate.
func pageRelayReplicas(t *testing.T, p *pages, pids map[int]string) []string {
	t.Helper()
	var out []string
	for conn, list := range p.transports() {
		for _, pc := range list {
			if pc.Local == nil || pc.Local.CandidateType != "relay" {
				t.Fatalf("page %s: %s peer connection of %s uses %+v (ICE %s), want a relayed local candidate", conn, pc.Kind, pc.StreamID, pc.Local, pc.ICEState)
			}
			out = append(out, udpPortOwner(t, pc.Local.Port, pids))
		}
	}
	return out
}

// waitPagesVideoBack waits until every remote video of the pages decoded a
// frame more than a second after since and within the last second.
func waitPagesVideoBack(t *testing.T, since time.Time, timeout time.Duration, pgs ...*pages) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		back, total := 0, 0
		var all []map[string][]frameGap
		for _, pg := range pgs {
			gaps := pg.gaps(since)
			all = append(all, gaps)
			for _, vs := range gaps {
				for _, v := range vs {
					total++
					if v.LastFrameAt > since.Add(time.Second).UnixMilli() && time.Since(time.UnixMilli(v.LastFrameAt)) < time.Second {
						back++
					}
				}
			}
		}
		if total > 0 && back == total {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d videos back within %s: %+v", back, total, timeout, all)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
