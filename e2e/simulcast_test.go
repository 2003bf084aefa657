//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// rtpVideo is one video RTP stream of a page's peer connection
// (videostats: getStats' inbound-rtp or outbound-rtp).
type rtpVideo struct {
	Type                    string  `json:"type"`
	RID                     string  `json:"rid"`
	Width                   int     `json:"width"`
	Height                  int     `json:"height"`
	Bytes                   int     `json:"bytes"`
	Active                  bool    `json:"active"`
	FramesDecoded           int     `json:"framesDecoded"`
	FramesDropped           int     `json:"framesDropped"`
	KeyFramesDecoded        int     `json:"keyFramesDecoded"`
	FreezeCount             int     `json:"freezeCount"`
	TotalFreezesDuration    float64 `json:"totalFreezesDuration"` // seconds
	PLICount                int     `json:"pliCount"`
	QualityLimitationReason string  `json:"qualityLimitationReason"`
	Codec                   string  `json:"codec"` // the negotiated codec's MIME type: video/VP8, video/H264
}

type pageVideoStats struct {
	ConnectionID string `json:"connectionId"`
	Videos       []struct {
		Kind         string     `json:"kind"`
		ConnectionID string     `json:"connectionId"`
		RTP          []rtpVideo `json:"rtp"`
	} `json:"videos"`
}

func (p *pages) videoStats() []pageVideoStats {
	var r struct{ Pages []pageVideoStats }
	p.do("videostats", &r)
	return r.Pages
}

// received returns what the pages' subscription to connection cid decodes
// (ok false while there is none).
func (p *pages) received(cid string) (rtpVideo, bool) {
	for _, pg := range p.videoStats() {
		for _, v := range pg.Videos {
			if v.Kind == "subscriber" && v.ConnectionID == cid && len(v.RTP) > 0 {
				return v.RTP[0], true
			}
		}
	}
	return rtpVideo{}, false
}

// sent returns the publisher's outbound video streams, one per simulcast
// encoding.
func (p *pages) sent() []rtpVideo {
	for _, pg := range p.videoStats() {
		for _, v := range pg.Videos {
			if v.Kind == "publisher" {
				return v.RTP
			}
		}
	}
	return nil
}

// simulcastWatch follows what a viewer page decodes of one publisher.
type simulcastWatch struct {
	t                 *testing.T
	viewer, publisher *pages
	pubID             string

	logged   time.Time
	prev     rtpVideo
	prevSent map[string]int
}

// timeline logs, at most once a second, what the viewer decodes and what
// the publisher sends.
func (w *simulcastWatch) timeline(v rtpVideo) {
	if time.Since(w.logged) < time.Second {
		return
	}
	if w.prevSent == nil {
		w.prevSent = map[string]int{}
	}
	w.logged = time.Now()
	line := fmt.Sprintf("viewer %4dx%-4d %3d frames decoded, %d freezes |", v.Width, v.Height, v.FramesDecoded-w.prev.FramesDecoded, v.FreezeCount-w.prev.FreezeCount)
	for _, e := range w.publisher.sent() {
		line += fmt.Sprintf(" %s %4dx%-4d %4d kbit/s %s", e.RID, e.Width, e.Height, (e.Bytes-w.prevSent[e.RID])*8/1000, e.QualityLimitationReason)
		w.prevSent[e.RID] = e.Bytes
	}
	w.t.Log(line)
	w.prev = v
}

// waitWidth waits until the viewer decodes the publisher at a width ok
// accepts, and returns how long it took and the viewer's stats then.
func (w *simulcastWatch) waitWidth(what string, ok func(int) bool, timeout time.Duration) (time.Duration, rtpVideo) {
	w.t.Helper()
	start := time.Now()
	var last rtpVideo
	for time.Since(start) < timeout {
		if v, found := w.viewer.received(w.pubID); found {
			last = v
			w.timeline(v)
			if ok(v.Width) {
				return time.Since(start), v
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.t.Fatalf("the viewer never decoded the publisher %s in %v: last %+v; the publisher sends %+v", what, timeout, last, w.publisher.sent())
	return 0, last
}

// hold watches the viewer for d and returns the longest stall of the
// publisher's video and the resolutions decoded meanwhile.
func (w *simulcastWatch) hold(d time.Duration) (maxGapMS int64, widths []int) {
	since := time.Now()
	for time.Since(since) < d {
		if v, ok := w.viewer.received(w.pubID); ok {
			w.timeline(v)
			if len(widths) == 0 || widths[len(widths)-1] != v.Width {
				widths = append(widths, v.Width)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, gaps := range w.viewer.gaps(since) {
		for _, g := range gaps {
			if g.ConnectionID == w.pubID {
				maxGapMS = max(maxGapMS, g.MaxGapMS)
			}
		}
	}
	return maxGapMS, widths
}

// TestSimulcastFollowsThePublisher: with OPENVIDU_WEBRTC_SIMULCAST the
// official openvidu-browser publishes its 1280x720 camera as three
// encodings (rdiv4, rdiv2, rdiv1) and the subscriber decodes the best one.
// When the publisher's uplink is capped (tc tbf in its network namespace)
// the browser stops its upper encodings: the media node moves the
// subscriber to the best one still arriving, at a keyframe, so its video
// goes on at a lower resolution; when the cap is lifted it climbs back.
// Through it all the subscriber's decoder reports no long freeze.
func TestSimulcastFollowsThePublisher(t *testing.T) {
	ns := newNetNS(t, netNSConfig{})
	dc := startNetNSDev(t, ns, netNSDevConfig{Env: []string{"OPENVIDU_WEBRTC_SIMULCAST=true"}})
	args := []string{"--unsafely-treat-insecure-origin-as-secure=" + dc.URL}
	viewer := startPagesWith(t, dc, pagesOptions{ChromiumArgs: args})
	publisher := startPagesWith(t, dc, pagesOptions{NS: ns, ChromiumArgs: args, Resolution: "1280x720"})
	sid := fmt.Sprintf("simulcast_%06d", rand.IntN(1e6))
	pubID := publisher.join(sid, 1)[0]
	viewer.join(sid, 1)
	viewer.waitVideo(1, 45*time.Second)

	w := &simulcastWatch{t: t, viewer: viewer, publisher: publisher, pubID: pubID}
	waitWidth := w.waitWidth
	took, v := waitWidth("at 1280x720", func(w int) bool { return w == 1280 }, 60*time.Second)
	t.Logf("1280x720 decoded %v after the first frame", took.Round(100*time.Millisecond))
	encodings := publisher.sent()
	if len(encodings) != 3 {
		t.Fatalf("the publisher sends %d video encodings, want 3 (simulcast): %+v", len(encodings), encodings)
	}
	for _, e := range encodings {
		t.Logf("encoding %s: %dx%d, %d bytes", e.RID, e.Width, e.Height, e.Bytes)
	}
	before := v

	// A 500 kbit/s uplink carries the lowest encodings only.
	ns.LimitUplink(500)
	took, v = waitWidth("below 1280 wide under a 500 kbit/s uplink", func(w int) bool { return w > 0 && w < 1280 }, 45*time.Second)
	t.Logf("capped uplink: the viewer decodes %dx%d %v after the cap", v.Width, v.Height, took.Round(100*time.Millisecond))
	// The lower layer keeps flowing.
	// Measured: stalls up to 1.28 s while the capped queue drains.
	if gap, widths := w.hold(5 * time.Second); gap > 1600 {
		t.Errorf("the viewer's video of the capped publisher stalled %d ms on the lower layer (widths %v)", gap, widths)
	}

	ns.LimitUplink(0)
	took, v = waitWidth("at 1280x720 again once the cap is lifted", func(w int) bool { return w == 1280 }, 90*time.Second)
	t.Logf("cap lifted: 1280x720 again after %v", took.Round(100*time.Millisecond))
	after := v
	t.Logf("viewer decoder: %d frames decoded, %d dropped, %d keyframes, %d freezes (%.1f s) over the test; %d freezes (%.1f s) before the cap",
		after.FramesDecoded, after.FramesDropped, after.KeyFramesDecoded, after.FreezeCount, after.TotalFreezesDuration, before.FreezeCount, before.TotalFreezesDuration)
	if after.FramesDecoded <= before.FramesDecoded {
		t.Errorf("no frame decoded over the test: %+v then %+v", before, after)
	}
	// Measured: 2.6-4.8 s in all, most of it while the top encoding still
	// trickles in before the browser stops it (without the switch, the
	// video stays frozen until the cap is lifted).
	if d := after.TotalFreezesDuration - before.TotalFreezesDuration; d > 8 {
		t.Errorf("the viewer's video froze %.1f s in all across the two switches", d)
	}
}

// TestSimulcastConstrainedSubscriber: per-subscriber bandwidth estimation.
// A publisher sends its 1280x720 camera in three encodings to two viewers
// (openvidu-browser pages that only subscribe); one viewer's downlink is
// then capped at 300 kbit/s (tc tbf in its network namespace). The media
// node's estimator for that subscription (GCC on its transport-wide
// congestion control feedback) falls, and the viewer gets the 320x180
// layer without stalls; probes (padding up to the next layer) find the
// cap still there without disturbing it. The other viewer and the
// publisher go on at 1280x720 as before. Once the cap is lifted, a probe
// gets through and the viewer climbs back to 1280x720.
func TestSimulcastConstrainedSubscriber(t *testing.T) {
	ns := newNetNS(t, netNSConfig{})
	dc := startNetNSDev(t, ns, netNSDevConfig{Env: []string{"OPENVIDU_WEBRTC_SIMULCAST=true"}})
	args := []string{"--unsafely-treat-insecure-origin-as-secure=" + dc.URL}
	publisher := startPagesWith(t, dc, pagesOptions{ChromiumArgs: args, Resolution: "1280x720"})
	open := startPagesWith(t, dc, pagesOptions{ChromiumArgs: args, Viewer: true})
	capped := startPagesWith(t, dc, pagesOptions{NS: ns, ChromiumArgs: args, Viewer: true})
	sid := fmt.Sprintf("constrained_%06d", rand.IntN(1e6))
	pubID := publisher.join(sid, 1)[0]
	open.join(sid, 1)
	capped.join(sid, 1)

	wOpen := &simulcastWatch{t: t, viewer: open, publisher: publisher, pubID: pubID}
	wCapped := &simulcastWatch{t: t, viewer: capped, publisher: publisher, pubID: pubID}
	is := func(width int) func(int) bool { return func(w int) bool { return w == width } }
	for _, w := range []*simulcastWatch{wOpen, wCapped} {
		took, _ := w.waitWidth("at 1280x720", is(1280), 60*time.Second)
		t.Logf("1280x720 decoded after %v", took.Round(100*time.Millisecond))
	}
	// The open viewer's frame rate and the publisher's top encoding
	// before the cap, over 5 s.
	openFPS := func(d time.Duration) (fps float64, width int) {
		a, _ := open.received(pubID)
		time.Sleep(d)
		b, _ := open.received(pubID)
		return float64(b.FramesDecoded-a.FramesDecoded) / d.Seconds(), b.Width
	}
	topKbit := func(from, to []rtpVideo, d time.Duration) int {
		for _, b := range to {
			for _, a := range from {
				if a.RID == b.RID && b.RID == "rdiv1" {
					return (b.Bytes - a.Bytes) * 8 / 1000 / int(d.Seconds())
				}
			}
		}
		return 0
	}
	sent0 := publisher.sent()
	fpsBefore, _ := openFPS(5 * time.Second)
	topBefore := topKbit(sent0, publisher.sent(), 5*time.Second)
	before, _ := capped.received(pubID)
	t.Logf("before the cap: the open viewer decodes %.1f frames/s, the publisher's top encoding sends %d kbit/s", fpsBefore, topBefore)

	ns.LimitDownlink(300)
	capAt := time.Now()
	t.Logf("downlink capped at %s", capAt.UTC().Format("15:04:05.000"))
	took, _ := wCapped.waitWidth("at 320x180 under a 300 kbit/s downlink", is(320), 30*time.Second)
	t.Logf("capped downlink: 320x180 after %v", took.Round(100*time.Millisecond))
	onLow := time.Now()
	gap, widths := wCapped.hold(20 * time.Second)
	t.Logf("on the low layer for 20 s: longest stall %d ms, widths %v", gap, widths)
	// The bound: no stall over 1 s on the low layer, probes
	// included.
	if gap > 1000 {
		t.Errorf("the capped viewer stalled %d ms on the low layer", gap)
	}
	if len(widths) != 1 || widths[0] != 320 {
		t.Errorf("the capped viewer decoded widths %v under the cap, want 320 only (a move up would stall it)", widths)
	}
	sent1 := publisher.sent()
	fpsCapped, openWidth := openFPS(5 * time.Second)
	topCapped := topKbit(sent1, publisher.sent(), 5*time.Second)
	t.Logf("under the cap: the open viewer decodes %dx at %.1f frames/s, the publisher's top encoding sends %d kbit/s", openWidth, fpsCapped, topCapped)
	if openWidth != 1280 || fpsCapped < 0.7*fpsBefore {
		t.Errorf("the open viewer decodes %d wide at %.1f frames/s under the other's cap, %.1f before", openWidth, fpsCapped, fpsBefore)
	}
	if topCapped < topBefore/2 {
		t.Errorf("the publisher's top encoding fell from %d to %d kbit/s under a viewer's cap", topBefore, topCapped)
	}
	var openGap int64
	for _, gaps := range open.gaps(capAt) {
		for _, g := range gaps {
			if g.ConnectionID == pubID {
				openGap = max(openGap, g.MaxGapMS)
			}
		}
	}
	t.Logf("the open viewer's longest stall since the cap: %d ms", openGap)
	if openGap > 1000 {
		t.Errorf("the open viewer stalled %d ms while the other was capped", openGap)
	}

	ns.LimitDownlink(0)
	t.Logf("cap lifted at %s", time.Now().UTC().Format("15:04:05.000"))
	took, after := wCapped.waitWidth("at 1280x720 again once the cap is lifted", is(1280), 60*time.Second)
	t.Logf("cap lifted: 1280x720 again after %v", took.Round(100*time.Millisecond))
	t.Logf("capped viewer's decoder from the cap on: %d frames decoded, %d dropped, %d keyframes, %d PLIs sent, %d freezes (%.1f s); on the low layer since %v",
		after.FramesDecoded-before.FramesDecoded, after.FramesDropped-before.FramesDropped, after.KeyFramesDecoded-before.KeyFramesDecoded,
		after.PLICount-before.PLICount, after.FreezeCount-before.FreezeCount, after.TotalFreezesDuration-before.TotalFreezesDuration, onLow.Sub(capAt).Round(100*time.Millisecond))
	if d := after.TotalFreezesDuration - before.TotalFreezesDuration; d > 5 {
		t.Errorf("the capped viewer's video froze %.1f s in all", d)
	}
	if n := after.FreezeCount - before.FreezeCount; n > 5 {
		t.Errorf("the capped viewer's video froze %d times", n)
	}
}

// encodingKbit returns what each of the publisher's encodings sent over d,
// in kbit/s, by rid.
func encodingKbit(publisher *pages, d time.Duration) map[string]int {
	before := map[string]int{}
	for _, e := range publisher.sent() {
		before[e.RID] = e.Bytes
	}
	time.Sleep(d)
	out := map[string]int{}
	for _, e := range publisher.sent() {
		out[e.RID] = int(float64(e.Bytes-before[e.RID]) * 8 / 1000 / d.Seconds())
	}
	return out
}

// waitEncodings waits until the rates of the publisher's encodings (kbit/s
// by rid, over 2 s) satisfy ok, and returns how long that took and the
// rates then.
func waitEncodings(t *testing.T, publisher *pages, what string, ok func(map[string]int) bool, timeout time.Duration) (time.Duration, map[string]int) {
	t.Helper()
	start := time.Now()
	var rates map[string]int
	for time.Since(start) < timeout {
		rates = encodingKbit(publisher, 2*time.Second)
		t.Logf("publisher encodings (kbit/s): %v", rates)
		if ok(rates) {
			return time.Since(start), rates
		}
	}
	t.Fatalf("the publisher's encodings never %s in %v: %v kbit/s", what, timeout, rates)
	return 0, nil
}

// allOn: every encoding sends; upperOff: the lowest (rdiv4) only.
func allOn(r map[string]int) bool    { return r["rdiv4"] > 0 && r["rdiv2"] > 0 && r["rdiv1"] > 0 }
func upperOff(r map[string]int) bool { return r["rdiv4"] > 0 && r["rdiv2"] == 0 && r["rdiv1"] == 0 }

// TestSimulcastPublisherCap: the node tells a simulcast publisher (by
// REMB) to stop the encodings no subscriber needs, and lets it send them
// again as soon as one does. The official openvidu-browser publishes its
// 1280x720 camera alone in a session: after the hold (5 s) only its
// 320x180 encoding is sent. A viewer joins: the cap is lifted and the
// viewer gets 1280x720. The viewer's downlink is capped at 300 kbit/s: it
// moves to 320x180, and the publisher, whose one subscriber needs no more,
// stops its upper encodings again. The downlink cap is lifted: the
// viewer's probes find room, the publisher's encodings come back one by
// one, and the viewer climbs back to 1280x720.
func TestSimulcastPublisherCap(t *testing.T) {
	ns := newNetNS(t, netNSConfig{})
	dc := startNetNSDev(t, ns, netNSDevConfig{Env: []string{"OPENVIDU_WEBRTC_SIMULCAST=true", "CHORUS_MEDIA_SIMULCAST_LAYER_CAP=true"}})
	args := []string{"--unsafely-treat-insecure-origin-as-secure=" + dc.URL}
	publisher := startPagesWith(t, dc, pagesOptions{ChromiumArgs: args, Resolution: "1280x720"})
	viewer := startPagesWith(t, dc, pagesOptions{NS: ns, ChromiumArgs: args, Viewer: true})
	sid := fmt.Sprintf("pubcap_%06d", rand.IntN(1e6))
	pubID := publisher.join(sid, 1)[0]
	joined := time.Now()

	took, _ := waitEncodings(t, publisher, "all sent", allOn, 60*time.Second)
	t.Logf("alone in the session: all three encodings sent %v after joining", took.Round(100*time.Millisecond))
	_, rates := waitEncodings(t, publisher, "stopped but the lowest", upperOff, 40*time.Second)
	t.Logf("alone in the session: only the lowest encoding sends %v after joining (%v kbit/s)", time.Since(joined).Round(100*time.Millisecond), rates)

	viewer.join(sid, 1)
	w := &simulcastWatch{t: t, viewer: viewer, publisher: publisher, pubID: pubID}
	is := func(width int) func(int) bool { return func(w int) bool { return w == width } }
	took, _ = w.waitWidth("at 1280x720 once it subscribes", is(1280), 60*time.Second)
	t.Logf("a viewer joins: 1280x720 decoded %v after joining", took.Round(100*time.Millisecond))
	before, _ := viewer.received(pubID)

	ns.LimitDownlink(300)
	capAt := time.Now()
	took, _ = w.waitWidth("at 320x180 under a 300 kbit/s downlink", is(320), 30*time.Second)
	t.Logf("the viewer's downlink capped: 320x180 after %v", took.Round(100*time.Millisecond))
	waitEncodings(t, publisher, "stopped but the lowest", upperOff, 40*time.Second)
	t.Logf("its one subscriber on the lowest layer: the upper encodings stop %v after the downlink cap", time.Since(capAt).Round(100*time.Millisecond))

	ns.LimitDownlink(0)
	took, after := w.waitWidth("at 1280x720 again once the downlink cap is lifted", is(1280), 90*time.Second)
	t.Logf("downlink cap lifted: 1280x720 again after %v", took.Round(100*time.Millisecond))
	t.Logf("viewer's decoder from the downlink cap on: %d frames decoded, %d keyframes, %d freezes (%.1f s)",
		after.FramesDecoded-before.FramesDecoded, after.KeyFramesDecoded-before.KeyFramesDecoded,
		after.FreezeCount-before.FreezeCount, after.TotalFreezesDuration-before.TotalFreezesDuration)
	if after.FramesDecoded <= before.FramesDecoded {
		t.Errorf("no frame decoded since the downlink cap: %+v then %+v", before, after)
	}
}

// TestSimulcastH264: simulcast with H.264 as with VP8 (the issue asks for
// both). A session created with forcedVideoCodec H264; openvidu-browser
// publishes its 1280x720 camera as three H.264 encodings; a viewer page
// in a network namespace decodes 1280x720 H.264, then, its downlink
// capped at 300 kbit/s, the 320x180 layer (a switch at an IDR of that
// layer: H.264 has no picture ids to rewrite, but the sequence numbers and
// timestamps are rewritten as for VP8) without a stall over 1 s, and
// 1280x720 again once the cap is lifted.
func TestSimulcastH264(t *testing.T) {
	ns := newNetNS(t, netNSConfig{})
	dc := startNetNSDev(t, ns, netNSDevConfig{Env: []string{"OPENVIDU_WEBRTC_SIMULCAST=true"}})
	args := []string{"--unsafely-treat-insecure-origin-as-secure=" + dc.URL}
	publisher := startPagesWith(t, dc, pagesOptions{ChromiumArgs: args, Resolution: "1280x720"})
	viewer := startPagesWith(t, dc, pagesOptions{NS: ns, ChromiumArgs: args, Viewer: true})
	sid := fmt.Sprintf("h264_%06d", rand.IntN(1e6))
	var created struct{ Session string }
	publisher.do("session "+sid+` {"forcedVideoCodec":"H264"}`, &created)
	pubID := publisher.join(sid, 1)[0]
	viewer.join(sid, 1)

	w := &simulcastWatch{t: t, viewer: viewer, publisher: publisher, pubID: pubID}
	is := func(width int) func(int) bool { return func(w int) bool { return w == width } }
	took, v := w.waitWidth("at 1280x720", is(1280), 60*time.Second)
	t.Logf("1280x720 decoded after %v, codec %s", took.Round(100*time.Millisecond), v.Codec)
	if v.Codec != "video/H264" {
		t.Fatalf("the viewer decodes %q, want video/H264", v.Codec)
	}
	rids := map[string]string{}
	for _, e := range publisher.sent() {
		rids[e.RID] = e.Codec
	}
	if len(rids) != 3 || rids["rdiv4"] != "video/H264" || rids["rdiv2"] != "video/H264" || rids["rdiv1"] != "video/H264" {
		t.Errorf("the publisher's encodings %v, want rdiv4, rdiv2 and rdiv1 in video/H264", rids)
	}

	before, _ := viewer.received(pubID)
	ns.LimitDownlink(300)
	capAt := time.Now()
	took, _ = w.waitWidth("at 320x180 under a 300 kbit/s downlink", is(320), 30*time.Second)
	t.Logf("downlink capped at 300 kbit/s: 320x180 after %v", took.Round(100*time.Millisecond))
	gap, widths := w.hold(10 * time.Second)
	t.Logf("on the low layer for 10 s: longest stall %d ms, widths %v", gap, widths)
	if gap > 1000 {
		t.Errorf("the viewer stalled %d ms on the low layer", gap)
	}
	ns.LimitDownlink(0)
	took, after := w.waitWidth("at 1280x720 again once the cap is lifted", is(1280), 60*time.Second)
	t.Logf("cap lifted: 1280x720 again after %v", took.Round(100*time.Millisecond))
	decoded := after.FramesDecoded - before.FramesDecoded
	t.Logf("viewer's decoder from the cap on: %d frames decoded, %d dropped, %d keyframes, %d freezes (%.1f s) over %v",
		decoded, after.FramesDropped-before.FramesDropped, after.KeyFramesDecoded-before.KeyFramesDecoded,
		after.FreezeCount-before.FreezeCount, after.TotalFreezesDuration-before.TotalFreezesDuration, time.Since(capAt).Round(100*time.Millisecond))
	if after.Codec != "video/H264" || decoded < 100 {
		t.Errorf("after the switches the viewer decodes %q, %d frames since the cap", after.Codec, decoded)
	}
	if d := after.TotalFreezesDuration - before.TotalFreezesDuration; d > 5 {
		t.Errorf("the viewer's video froze %.1f s in all", d)
	}
}

// TestSimulcastDefault: simulcast is on unless configured off. Two
// openvidu-browser pages publish their 640x480 cameras to each other:
// by default GET /config says OPENVIDU_WEBRTC_SIMULCAST true and each
// publisher sends two encodings (openvidu-browser's rdiv2 and rdiv1: two
// layers below 960x540); with OPENVIDU_WEBRTC_SIMULCAST=false (OpenVidu
// 2.x's default) /config says false and each sends one. Either way each
// page decodes the other at 640x480.
func TestSimulcastDefault(t *testing.T) {
	tests := []struct {
		name      string
		env       []string
		simulcast bool
		rids      []string
	}{
		{"default", nil, true, []string{"rdiv1", "rdiv2"}},
		{"off as in OpenVidu", []string{"OPENVIDU_WEBRTC_SIMULCAST=false"}, false, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := startDev(t, devOptions{Env: tt.env})
			var cfg struct {
				Simulcast bool `json:"OPENVIDU_WEBRTC_SIMULCAST"`
			}
			if err := json.Unmarshal(restCall(t, dc, "GET", "/openvidu/api/config", ""), &cfg); err != nil || cfg.Simulcast != tt.simulcast {
				t.Errorf("GET /config: OPENVIDU_WEBRTC_SIMULCAST %v (%v), want %v", cfg.Simulcast, err, tt.simulcast)
			}
			pg := startPages(t, dc)
			ids := pg.join(fmt.Sprintf("simdefault_%06d", rand.IntN(1e6)), 2)
			pg.waitVideo(1, 60*time.Second)
			// A subscriber starts on what arrives: the publisher's upper
			// encoding comes on as Chrome's estimate grows.
			start := time.Now()
			type view struct{ rids, decoded []string }
			views := map[string]view{}
			waitFor(t, "both pages decoding the other at 640x480", 30*time.Second, func() bool {
				clear(views)
				ok := true
				for _, page := range pg.videoStats() {
					var v view
					for _, video := range page.Videos {
						for _, r := range video.RTP {
							switch video.Kind {
							case "publisher":
								v.rids = append(v.rids, r.RID)
							case "subscriber":
								v.decoded = append(v.decoded, fmt.Sprintf("%dx%d", r.Width, r.Height))
							}
						}
					}
					slices.Sort(v.rids)
					views[page.ConnectionID] = v
					ok = ok && slices.Contains(ids, page.ConnectionID) && slices.Equal(v.decoded, []string{"640x480"})
				}
				return ok && len(views) == 2
			}, func() string { return fmt.Sprint(views) })
			for id, v := range views {
				if !slices.Equal(v.rids, tt.rids) {
					t.Errorf("page %s publishes encodings %q, want %q", id, v.rids, tt.rids)
				}
				t.Logf("page %s: publishes %q, decodes %v (%v after the first frames)", id, v.rids, v.decoded, time.Since(start).Round(100*time.Millisecond))
			}
		})
	}
}
