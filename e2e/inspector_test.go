//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// inspectorState is what e2e/js/inspector.cjs reads off the page.
type inspectorState struct {
	Login, App bool
	Status     string
	Masters    []struct{ ID, Master, Status string }
	Nodes      []struct {
		ID, Status string
		Sessions   int
	}
	Sessions []struct {
		ID, Node     string
		Participants int
	}
	Events   []inspectorEvent
	Timeline []string
	Chart    bool
}

// inspectorEvent is a line of the Inspector's live feed.
type inspectorEvent struct {
	Name, Session, Text string
	ShownAt, EmittedAt  int64 // Unix ms: on the page, and the event's own timestamp
}

// shows reports whether the feed has an event named name whose line
// mentions about.
func (st inspectorState) shows(name, about string) bool {
	return slices.ContainsFunc(st.Events, func(e inspectorEvent) bool { return e.Name == name && strings.Contains(e.Text, about) })
}

func inspectorStateOf(p *pages) inspectorState {
	var r struct{ State inspectorState }
	p.do("state", &r)
	return r.State
}

// TestInspector drives the Inspector in headless Chromium against `chorus
// dev` (3 masters, 2 media nodes) while two openvidu-browser pages are in
// a session: a wrong secret is refused; logged in, the page shows the
// masters, the nodes and the session with its two participants on its
// node; "Drain (migrate sessions)" on that node moves the session to the
// other node, on the page (and the participants get video again); a
// launched node appears; a SIGKILLed master shows DOWN and its nodeCrashed
// event arrives on the live feed; a SIGKILLed media node's too, with the
// session moved to the launched node; in the session's view a participant
// is force-disconnected (participantLeft on its timeline), then the session
// is closed; logging out ends the login (the API answers 401). The page makes no request outside the
// cluster. CHORUS_INSPECTOR_SCREENSHOTS=<dir> keeps screenshots of these
// states (the README's).
func TestInspector(t *testing.T) {
	dc := startDev(t, devOptions{Args: []string{"--masters", "3", "--media-nodes", "2"}})
	shots := os.Getenv("CHORUS_INSPECTOR_SCREENSHOTS")
	shot := func(p *pages, name string) {
		if shots == "" {
			return
		}
		var r struct{ Screenshot string }
		p.do("screenshot "+filepath.Join(shots, name), &r)
	}
	participants := startPages(t, dc)
	sid := fmt.Sprintf("inspector_%06d", rand.IntN(1e6))
	participants.joinOn(sid, 2, "media_1")
	participants.waitVideo(1, 45*time.Second)

	insp := startPagesWith(t, dc, pagesOptions{Script: "inspector.cjs"})
	var opened struct{ Opened bool }
	insp.do("open", &opened)
	if st := inspectorStateOf(insp); !st.Login || st.App {
		t.Fatalf("the Inspector opened without a login form: %+v", st)
	}
	var login struct {
		LoggedIn bool
		Message  string
	}
	insp.do("login not-the-secret", &login)
	if login.LoggedIn || !strings.Contains(login.Message, "Wrong secret") {
		t.Fatalf("a wrong secret: %+v, want refused with \"Wrong secret\"", login)
	}
	shot(insp, "inspector-login.png")
	insp.do("login "+dc.Secret, &login)
	if !login.LoggedIn {
		t.Fatalf("the secret was refused: %+v", login)
	}

	var st inspectorState
	describe := func() string { return fmt.Sprintf("%+v", st) }
	session := func() (node string, participants int) {
		for _, s := range st.Sessions {
			if s.ID == sid {
				return s.Node, s.Participants
			}
		}
		return "", 0
	}
	waitFor(t, "the page showing 3 masters UP, 2 running nodes and the session on media_1 with 2 participants", 30*time.Second, func() bool {
		st = inspectorStateOf(insp)
		up := 0
		for _, m := range st.Masters {
			if m.Status == "UP" {
				up++
			}
		}
		running := 0
		for _, n := range st.Nodes {
			if n.Status == "running" {
				running++
			}
		}
		node, n := session()
		return up == 3 && running == 2 && node == "media_1" && n == 2 && st.Chart
	}, describe)
	shot(insp, "inspector-cluster.png")

	var clicked struct{ Clicked bool }
	insp.do(`click button[data-action="drop-migrate"][data-node="media_1"]`, &clicked)
	drained := time.Now()
	waitFor(t, "the session on media_2 on the page", 60*time.Second, func() bool {
		st = inspectorStateOf(insp)
		node, _ := session()
		return node == "media_2"
	}, describe)
	t.Logf("drain by migration: the session shown on media_2 %s after the click", time.Since(drained).Round(time.Millisecond))
	participants.waitVideo(1, 45*time.Second)

	insp.do(`click [data-testid="launch"]`, &clicked)
	waitFor(t, "a launched node running on the page", 60*time.Second, func() bool {
		st = inspectorStateOf(insp)
		for _, n := range st.Nodes {
			if n.ID != "media_1" && n.ID != "media_2" && n.Status == "running" {
				return true
			}
		}
		return false
	}, describe)

	launched := ""
	for _, n := range st.Nodes {
		if n.ID != "media_1" && n.ID != "media_2" {
			launched = n.ID
		}
	}

	killed := time.Now()
	if err := syscall.Kill(dc.pid(t, "master_3"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "master_3 DOWN on the page and its nodeCrashed on the live feed", 30*time.Second, func() bool {
		st = inspectorStateOf(insp)
		down := slices.ContainsFunc(st.Masters, func(m struct{ ID, Master, Status string }) bool {
			return m.Master == "master_3" && m.Status == "DOWN"
		})
		return down && st.shows("nodeCrashed", "master_3")
	}, describe)
	t.Logf("master_3 shown DOWN, its nodeCrashed on the feed, %s after its SIGKILL", time.Since(killed).Round(time.Millisecond))

	killed = time.Now()
	if err := syscall.Kill(dc.pid(t, "media_2"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "media_2's nodeCrashed on the feed and the session on "+launched, 30*time.Second, func() bool {
		st = inspectorStateOf(insp)
		node, _ := session()
		return st.shows("nodeCrashed", "media_2") && node == launched
	}, describe)
	t.Logf("media_2's nodeCrashed and the session on %s shown %s after media_2's SIGKILL", launched, time.Since(killed).Round(time.Millisecond))
	participants.waitVideo(1, 45*time.Second)
	st = inspectorStateOf(insp)
	shot(insp, "inspector-crashes.png")

	var reqs struct{ Requests []string }
	insp.do("requests", &reqs)
	for _, u := range reqs.Requests {
		if !strings.HasPrefix(u, dc.URL+"/") {
			t.Errorf("the Inspector requested %s, outside the cluster (%s)", u, dc.URL)
		}
	}

	// A session's view: its participants, force disconnect one, its
	// timeline from the live feed; then close the session.
	insp.do(`click button[data-action="open"][data-session="`+sid+`"]`, &clicked)
	insp.do(`click [data-testid="session-detail"] button[data-action="disconnect"]`, &clicked)
	waitFor(t, "participantLeft on the session's timeline and one participant left", 30*time.Second, func() bool {
		st = inspectorStateOf(insp)
		_, n := session()
		return n == 1 && slices.ContainsFunc(st.Timeline, func(line string) bool {
			return strings.Contains(line, "participantLeft") && strings.Contains(line, "forceDisconnectByServer")
		})
	}, describe)
	shot(insp, "inspector-session.png")
	insp.do(`click button[data-action="close"][data-session="`+sid+`"]`, &clicked)
	waitFor(t, "the session closed: sessionDestroyed on the feed, gone from the list", 30*time.Second, func() bool {
		st = inspectorStateOf(insp)
		node, _ := session()
		return node == "" && st.shows("sessionDestroyed", sid)
	}, describe)

	// The feed's latency: an event's emission (its timestamp) to its line
	// on the page.
	var lat []int64
	names := map[string]bool{}
	for _, e := range st.Events {
		names[e.Name] = true
		if e.EmittedAt > 0 {
			lat = append(lat, e.ShownAt-e.EmittedAt)
		}
	}
	if len(lat) == 0 {
		t.Fatalf("no event with a timestamp on the feed: %+v", st.Events)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("event feed: %d events (%v), emitted to shown p50 %d ms, max %d ms", len(lat), slices.Sorted(maps.Keys(names)), lat[len(lat)/2], lat[len(lat)-1])

	insp.do(`click [data-testid="logout"]`, &clicked)
	waitFor(t, "the login form after logging out", 10*time.Second, func() bool {
		st = inspectorStateOf(insp)
		return st.Login && !st.App
	}, describe)
	var fetched struct{ Status int }
	insp.do("fetch /inspector/api/sessions", &fetched)
	if fetched.Status != 401 {
		t.Errorf("the API after logging out: %d, want 401", fetched.Status)
	}
}
