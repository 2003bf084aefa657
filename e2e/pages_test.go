//go:build e2e

package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pages steers headless Chromium pages running openvidu-browser (e2e/js/pages.cjs).
type pages struct {
	t      *testing.T
	dc     *devCluster
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr *syncBuffer
}

// pageStats is what one page reports.
type pageStats struct {
	ConnectionID string `json:"connectionId"`
	Videos       []struct {
		ConnectionID string `json:"connectionId"`
		Width        int    `json:"width"`
		Frames       int    `json:"frames"`
	} `json:"videos"`
	Events []struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
		At     int64  `json:"at"`
	} `json:"events"`
}

func startPages(t *testing.T, dc *devCluster) *pages {
	t.Helper()
	return startPagesWith(t, dc, pagesOptions{})
}

// pagesOptions say where pages.cjs runs and how its Chromium starts.
type pagesOptions struct {
	// NS runs pages.cjs, its Chromium included, inside a network namespace.
	NS *netNS
	// ChromiumArgs are extra Chromium flags.
	ChromiumArgs []string
	// ICETransportPolicy, when set ("relay"), is given to openvidu-browser
	// as OV.setAdvancedConfiguration({rtcConfiguration: {iceTransportPolicy}}).
	ICETransportPolicy string
	// Resolution is the publishers' camera resolution ("1280x720"; the
	// demo's 640x480 by default).
	Resolution string
	// Viewer pages subscribe and do not publish.
	Viewer bool
	// Script is the driver under e2e/js (default pages.cjs, the demo's
	// pages; inspector.cjs drives the Inspector), same line protocol.
	Script string
}

func startPagesWith(t *testing.T, dc *devCluster, opts pagesOptions) *pages {
	t.Helper()
	script := filepath.Join(repoRoot, "e2e", "js", cmp.Or(opts.Script, "pages.cjs"))
	cmd := exec.Command("node", script)
	if opts.NS != nil {
		// ip netns exec enters the namespace and executes node itself: the
		// pid (and Pdeathsig) are node's.
		cmd = opts.NS.Command(context.Background(), "node", script)
	}
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(repoRoot, "web", "node_modules"), "CHORUS_URL="+dc.URL, "CHORUS_SECRET="+dc.Secret,
		"CHORUS_CHROMIUM_ARGS="+strings.Join(opts.ChromiumArgs, " "), "CHORUS_ICE_TRANSPORT_POLICY="+opts.ICETransportPolicy, "CHORUS_RESOLUTION="+opts.Resolution, fmt.Sprintf("CHORUS_PUBLISH=%v", !opts.Viewer))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	p := &pages{t: t, dc: dc, cmd: cmd, in: in, out: bufio.NewScanner(out), stderr: &syncBuffer{}}
	p.out.Buffer(make([]byte, 1<<20), 16<<20)
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// CHORUS_PAGE_LOGS=/path keeps the pages' whole output in a file,
		// any other value logs its tail when the test fails.
		if logs := os.Getenv("CHORUS_PAGE_LOGS"); strings.HasPrefix(logs, "/") {
			_ = os.WriteFile(logs, []byte(p.stderr.String()), 0o644)
		} else if logs != "" && t.Failed() {
			t.Logf("pages.cjs output:\n%s", tail(p.stderr.String(), 400))
		}
		fmt.Fprintln(p.in, "quit")
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var ready struct{ Ready bool }
	p.read(&ready)
	return p
}

func (p *pages) read(v any) {
	p.t.Helper()
	if !p.out.Scan() {
		p.t.Fatalf("pages.cjs ended: %v\n%s", p.out.Err(), p.stderr.String())
	}
	line := p.out.Bytes()
	var e struct{ Error string }
	if json.Unmarshal(line, &e) == nil && e.Error != "" {
		p.t.Fatalf("pages.cjs: %s", e.Error)
	}
	if err := json.Unmarshal(line, v); err != nil {
		p.t.Fatalf("pages.cjs said %q: %v", line, err)
	}
}

func (p *pages) do(cmd string, v any) {
	p.t.Helper()
	fmt.Fprintln(p.in, cmd)
	p.read(v)
}

// join opens count pages that join the session and publish.
func (p *pages) join(sid string, count int) []string {
	var r struct{ Joined []string }
	p.do(fmt.Sprintf("join %s %d", sid, count), &r)
	return r.Joined
}

// joinOn is join for a session created on a given media node.
func (p *pages) joinOn(sid string, count int, node string) []string {
	waitNodeRunning(p.t, p.dc, node)
	var r struct{ Joined []string }
	p.do(fmt.Sprintf("join %s %d %s", sid, count, node), &r)
	return r.Joined
}

// frameGap is how long a page's remote video went without a new frame.
type frameGap struct {
	ConnectionID    string `json:"connectionId"`
	MaxGapMS        int64  `json:"maxGapMs"`
	GapEndAt        int64  `json:"gapEndAt"` // when the longest gap ended (ms since the epoch; 0: it goes on)
	LastFrameAt     int64  `json:"lastFrameAt"`
	FirstFrameAfter int64  `json:"firstFrameAfter"`
}

// gaps returns every page's remote videos' longest frame gaps since a time.
func (p *pages) gaps(since time.Time) map[string][]frameGap {
	var r struct {
		Pages []struct {
			ConnectionID string     `json:"connectionId"`
			Gaps         []frameGap `json:"gaps"`
		}
	}
	p.do(fmt.Sprintf("gaps %d", since.UnixMilli()), &r)
	out := map[string][]frameGap{}
	for _, pg := range r.Pages {
		out[pg.ConnectionID] = pg.Gaps
	}
	return out
}

func (p *pages) stats() []pageStats {
	var r struct{ Pages []pageStats }
	p.do("stats", &r)
	return r.Pages
}

func (p *pages) leave() {
	var r struct{ Left bool }
	p.do("leave", &r)
}

// reset makes every page leave and closes them.
func (p *pages) reset() {
	var r struct{ Reset bool }
	p.do("reset", &r)
}

// candidateEnd is one end of an ICE candidate pair, as getStats() reports it.
type candidateEnd struct {
	Protocol      string `json:"protocol"`
	CandidateType string `json:"candidateType"`
	Address       string `json:"address"`
	Port          int    `json:"port"`
	TCPType       string `json:"tcpType"`
	// RelayProtocol is how a relayed local candidate reaches its TURN
	// server: udp, tcp or tls ("" for other candidates).
	RelayProtocol string `json:"relayProtocol"`
}

// pageTransport is the candidate pair of one peer connection of a page.
type pageTransport struct {
	StreamID string        `json:"streamId"`
	Kind     string        `json:"kind"` // publisher or subscriber
	ICEState string        `json:"iceState"`
	Local    *candidateEnd `json:"local"`
	Remote   *candidateEnd `json:"remote"`
}

// transports returns each page's peer connections' candidate pairs, by
// connection id.
func (p *pages) transports() map[string][]pageTransport {
	var r struct {
		Pages []struct {
			ConnectionID string          `json:"connectionId"`
			Transports   []pageTransport `json:"transports"`
		}
	}
	p.do("transports", &r)
	out := map[string][]pageTransport{}
	for _, pg := range r.Pages {
		out[pg.ConnectionID] = pg.Transports
	}
	return out
}

// joinTimings is when a page's join started, connected and published, and
// when each remote video (by connection id) decoded its first frame (ms
// since the epoch, the machine's clock).
type joinTimings struct {
	JoinStartedAt    int64            `json:"joinStartedAt"`
	ConnectedAt      int64            `json:"connectedAt"`
	PublishStartedAt int64            `json:"publishStartedAt"`
	PublishedAt      int64            `json:"publishedAt"`
	FirstFrames      map[string]int64 `json:"firstFrames"`
	// Subscriptions are the steps of each remote video's subscription, by
	// connection id: when openvidu-browser's streamCreated made the page
	// subscribe, and when that peer connection's ICE and then DTLS
	// connected (0: not yet).
	Subscriptions map[string]struct {
		SubscribedAt   int64 `json:"subscribedAt"`
		OfferAt        int64 `json:"offerAt"`
		AnswerAt       int64 `json:"answerAt"`
		CheckingAt     int64 `json:"checkingAt"`
		ICEConnectedAt int64 `json:"iceConnectedAt"`
		ConnectedAt    int64 `json:"connectedAt"`
	} `json:"subscriptions"`
}

// joinSteps breaks a page's join into its steps up to its first frame of
// the video of connection from, in ms, each after the one before:
// "subscribe 40, offer 30, answer 5, checking 2, ice 180, dtls 20, first
// frame 400" (subscribe: from join() to streamCreated, which comes during
// session.connect for streams already there; the WebSocket session itself
// is ConnectMS).
func (j joinTimings) joinSteps(from string) string {
	sub := j.Subscriptions[from]
	marks := []struct {
		name string
		at   int64
	}{
		{"subscribe", sub.SubscribedAt}, {"offer", sub.OfferAt}, {"answer", sub.AnswerAt}, {"checking", sub.CheckingAt},
		{"ice", sub.ICEConnectedAt}, {"dtls", sub.ConnectedAt}, {"first frame", j.FirstFrames[from]},
	}
	prev := j.JoinStartedAt
	var out []string
	for _, m := range marks {
		if m.at == 0 {
			out = append(out, m.name+" -")
			continue
		}
		out = append(out, fmt.Sprintf("%s %d", m.name, m.at-prev))
		prev = m.at
	}
	return strings.Join(out, ", ")
}

// timings returns each page's join timings, by connection id.
func (p *pages) timings() map[string]joinTimings {
	var r struct {
		Pages []struct {
			ConnectionID string      `json:"connectionId"`
			Timings      joinTimings `json:"timings"`
		}
	}
	p.do("timings", &r)
	out := map[string]joinTimings{}
	for _, pg := range r.Pages {
		out[pg.ConnectionID] = pg.Timings
	}
	return out
}

// waitVideo waits until every page decodes want remote videos.
func (p *pages) waitVideo(want int, timeout time.Duration) []pageStats {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := p.stats()
		ok := true
		for _, pg := range st {
			n := 0
			for _, v := range pg.Videos {
				if v.Width > 0 && v.Frames > 0 {
					n++
				}
			}
			ok = ok && n == want
		}
		if ok {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pages do not all decode %d videos: %+v", want, st)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// eventsSince lists the pages' events from since on, one line per page:
// "con_x: +8.31s exception ICE_CONNECTION_DISCONNECTED str_..., ..." (what
// a slow recovery's step timings are read from).
func eventsSince(stats []pageStats, since time.Time) string {
	var lines []string
	for _, pg := range stats {
		var evs []string
		for _, e := range pg.Events {
			if at := time.UnixMilli(e.At); !at.Before(since) {
				evs = append(evs, strings.TrimSpace(fmt.Sprintf("+%.2fs %s %s", at.Sub(since).Seconds(), e.Type, e.Detail)))
			}
		}
		lines = append(lines, pg.ConnectionID+": "+strings.Join(evs, ", "))
	}
	return strings.Join(lines, "\n")
}

func eventTypes(pg pageStats) string {
	var out []string
	for _, e := range pg.Events {
		out = append(out, e.Type)
	}
	return strings.Join(out, ",")
}
