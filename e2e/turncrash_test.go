//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
// Either way media comes back within maxRelayedPionRecoveryMS, on the same
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
			waitPionMedia(t, subs, killedAt.Add(time.Second), 30*time.Second)
			time.Sleep(time.Second)
			var gaps []int64
			worst := int64(0)
			for _, s := range subs {
				g := s.Stats().MaxGap.Milliseconds()
				gaps = append(gaps, g)
				worst = max(worst, g)
			}
			t.Logf("SIGKILL %s: media gaps %v ms (bound %d)", kill, gaps, maxRelayedPionRecoveryMS)
			if worst > maxRelayedPionRecoveryMS {
				t.Errorf("a subscription's media stopped for %d ms after SIGKILL %s (bound %d ms)", worst, kill, maxRelayedPionRecoveryMS)
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
			if f := os.Getenv("CHORUS_TURN_CRASH_REPORT"); f != "" {
				raw, _ := json.Marshal(map[string]any{"killed": kill, "gaps_ms": gaps, "max_ms": worst})
				if fh, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
					_, _ = fh.Write(append(raw, '\n'))
					_ = fh.Close()
				}
			}
		})
	}
}

// maxRelayedPionRecoveryMS bounds a relayed pion participant's media gap
// after a TURN replica or media node crash: BENCHMARKS.md measured
// 2.9-3.7 s (TURN replica) and 2.8-3.2 s (media node), x1.25, within the
// issue's 5 s. (5.4 s after a media node crash while relay-only
// participants waited out pion's 2 s relay acceptance wait.)
const maxRelayedPionRecoveryMS = 4600

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
