//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// qualityEvent is a networkQualityLevelChanged event a page saw.
type qualityEvent struct {
	ConnectionID string
	Old, New     string // Old is "undefined" for a connection's first level
	At           time.Time
}

// qualityEvents returns the networkQualityLevelChanged events a page saw
// (web/demo logs them as "<connectionId> <old> <new>").
func qualityEvents(pg pageStats) []qualityEvent {
	var out []qualityEvent
	for _, e := range pg.Events {
		if e.Type != "networkQualityLevelChanged" {
			continue
		}
		f := strings.Fields(e.Detail)
		if len(f) != 3 {
			continue
		}
		out = append(out, qualityEvent{ConnectionID: f[0], Old: f[1], New: f[2], At: time.UnixMilli(e.At)})
	}
	return out
}

// levelOf is the last level a page was told for connection cid (-1: none).
func levelOf(pg pageStats, cid string) int {
	level := -1
	for _, e := range qualityEvents(pg) {
		if e.ConnectionID == cid {
			level, _ = strconv.Atoi(e.New)
		}
	}
	return level
}

// TestNetworkQuality is OpenVidu Pro's network quality API with the
// official openvidu-browser: two Chromium pages publish in one session,
// one of them inside a network namespace whose uplink then drops 10 %,
// then 30 % of its UDP packets at random. Both pages see the namespaced
// connection's level (networkQualityLevelChanged) fall with each step and
// recover once the loss is gone, while the other connection's level holds;
// nothing is sent while nothing changes. Then the namespace's downlink is
// capped at 300 kbit/s: the level falls on the browser's bandwidth
// estimate, and recovers when the cap is lifted.
func TestNetworkQuality(t *testing.T) {
	ns := newNetNS(t, netNSConfig{})
	interval := 2 * time.Second
	dc := startNetNSDev(t, ns, netNSDevConfig{Env: []string{"OPENVIDU_PRO_NETWORK_QUALITY=true",
		"OPENVIDU_PRO_NETWORK_QUALITY_INTERVAL=" + strconv.Itoa(int(interval/time.Second))}})
	root, inside := startNetNSPages(t, dc, ns)
	sid := fmt.Sprintf("netquality_%06d", rand.IntN(1e6))
	rootID := root.join(sid, 1)[0]
	insideID := inside.join(sid, 1)[0]
	root.waitVideo(1, 45*time.Second)
	inside.waitVideo(1, 45*time.Second)

	both := func() []pageStats { return append(root.stats(), inside.stats()...) }
	count := func(cid string) int {
		n := 0
		for _, pg := range both() {
			for _, e := range qualityEvents(pg) {
				if e.ConnectionID == cid {
					n++
				}
			}
		}
		return n
	}

	// A clean link: both connections are rated 4 or 5, and that stays.
	level, took := waitLevel(t, insideID, 4, 5, 30*time.Second, root, inside)
	t.Logf("namespaced connection rated %d, %s after its video played", level, took.Round(time.Millisecond))
	waitLevel(t, rootID, 4, 5, 30*time.Second, root, inside)
	before := count(insideID) + count(rootID)
	time.Sleep(6 * interval)
	if after := count(insideID) + count(rootID); after != before {
		t.Errorf("%d networkQualityLevelChanged events on clean links in %s, want none: %+v", after-before, 6*interval, qualityEvents(inside.stats()[0]))
	}

	steps := []struct {
		loss   int
		lo, hi int
	}{{10, 2, 4}, {30, 1, 2}, {0, 4, 5}}
	for _, step := range steps {
		ns.SetFirewall(netNSConfig{UDPLossPercent: step.loss})
		level, took := waitLevel(t, insideID, step.lo, step.hi, 30*time.Second, root, inside)
		t.Logf("uplink loss %d %%: namespaced connection rated %d after %s (%d UDP packets dropped so far)",
			step.loss, level, took.Round(time.Millisecond), ns.DroppedAtRandom())
		// The level holds while the loss does (a 2 s window of a 50
		// packet/s audio stream measures 10 % as 10 +- 3 %).
		time.Sleep(3 * interval)
		for _, pg := range both() {
			if l := levelOf(pg, insideID); l < step.lo || l > step.hi {
				t.Errorf("uplink loss %d %%: a page was told %d after %s more, want %d..%d", step.loss, l, 3*interval, step.lo, step.hi)
			}
			// The other connection keeps its own level: 4-5 on clean
			// links; while the namespaced publisher's stream arrives lossy
			// and slowing, the root page's bandwidth estimate for it may
			// dip below what it is sent (a cap at 3, or 2), never to the
			// lossy link's 1.
			floor := 4
			if step.loss > 0 {
				floor = 2
			}
			if l := levelOf(pg, rootID); l < floor {
				t.Errorf("uplink loss %d %% on the other page: the root page's level fell to %d (want %d or more)", step.loss, l, floor)
			}
		}
	}

	// A downlink too narrow for the video it is sent: the namespaced
	// browser's bandwidth estimate (REMB) falls below what the node sends
	// it, and its level with it, as the other page sees (the namespaced
	// page's own WebSocket shares the starved link). Lifted: back up.
	ns.LimitDownlink(300)
	level, took = waitLevel(t, insideID, 1, 3, 30*time.Second, root)
	t.Logf("downlink capped at 300 kbit/s: the other page was told %d after %s", level, took.Round(time.Millisecond))
	ns.LimitDownlink(0)
	level, took = waitLevel(t, insideID, 4, 5, 30*time.Second, root)
	t.Logf("downlink cap lifted: the other page was told %d after %s", level, took.Round(time.Millisecond))
	root.leave()
	inside.leave()
}

// waitLevel waits until every page of ps was told a level of cid within
// [lo, hi], and returns the first page's with how long it took.
func waitLevel(t *testing.T, cid string, lo, hi int, timeout time.Duration, ps ...*pages) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	var seen []int
	waitFor(t, fmt.Sprintf("%d page(s) told a level of %s within %d..%d", len(ps), cid, lo, hi), timeout, func() bool {
		seen = seen[:0]
		for _, p := range ps {
			seen = append(seen, levelOf(p.stats()[0], cid))
		}
		for _, l := range seen {
			if l < lo || l > hi {
				return false
			}
		}
		return true
	}, func() string {
		return fmt.Sprintf("levels seen by the pages: %v; events of the first: %+v", seen, qualityEvents(ps[0].stats()[0]))
	})
	return seen[0], time.Since(start)
}
