package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/chorus-rtc/chorus/sdk/openvidu"
	"github.com/chorus-rtc/chorus/sdk/participant"
)

// untilCPUMaxSessions bounds an --until-cpu run that never reaches its CPU.
const untilCPUMaxSessions = 1000

// settle is how long an --until-cpu run watches a new session's load (the
// node's load is a 3 s average) before deciding to add another.
const settle = 4 * time.Second

// maxErrorSamples is how many error messages the result keeps.
const maxErrorSamples = 20

// runner is one run's state. Its goroutines (members, sampler) belong to
// Run, which waits for them before returning.
type runner struct {
	cfg     Config
	api     *openvidu.Client
	scraper *http.Client
	log     *slog.Logger
	prof    participant.VideoProfile
	runID   string

	mu      sync.Mutex
	members []*member
	joinLat []float64
	// joinSteps holds, per step (JoinSteps), the durations of the joins
	// that became known.
	joinSteps map[string][]float64
	errs      int
	errList   []string
	sessions  []string
	nodes     map[string]string // media node id -> its uri
	timeline  []Sample
	lastTick  tick
}

// member is one participant of the load.
type member struct {
	session   string
	publishes bool
	subscribe bool
	tokenAt   time.Time
	restTook  time.Duration // POST /connection, before tokenAt
	p         *participant.Participant

	mu      sync.Mutex
	subs    map[string]*participant.Subscription
	first   *participant.Subscription // its first subscription (the join's breakdown)
	waiting bool                      // streams were there at join: join latency is pending
}

// tick is the sampler's previous reading.
type tick struct {
	at       time.Time
	received uint64
	lost     uint64
	nodes    map[string]nodeCounters
}

// Run runs the load test and returns what it measured. It returns early,
// with what it has, when ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.MaxLoss == 0 {
		cfg.MaxLoss = 0.01
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	api, err := openvidu.New(openvidu.Config{URL: cfg.URL, Secret: cfg.Secret})
	if err != nil {
		return nil, err
	}
	r := &runner{
		cfg: cfg, api: api, log: cfg.Logger, nodes: map[string]string{},
		scraper: &http.Client{Timeout: 3 * time.Second},
		runID:   fmt.Sprintf("loadtest_%d", time.Now().Unix()%1_000_000),
	}
	if cfg.Video.FPS > 0 {
		r.prof = participant.VideoProfileFor(cfg.Video.Width, cfg.Video.Height, cfg.Video.FPS)
	}
	if err := r.refreshNodes(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	res := &Result{Params: r.params(start)}

	media, stopMedia := context.WithCancel(context.WithoutCancel(ctx))
	var members sync.WaitGroup
	samplerCtx, stopSampler := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		r.sample(samplerCtx, start)
	}()
	defer func() {
		stopSampler()
		sampler.Wait()
		stopMedia()
		r.teardown()
		members.Wait()
	}()

	// Ramp up: sessions one after the other, participants at cfg.Ramp.
	limit := cfg.Sessions
	if cfg.UntilCPU > 0 && limit <= 1 {
		limit = untilCPUMaxSessions
	}
	pace := time.NewTicker(time.Duration(float64(time.Second) / cfg.Ramp))
	defer pace.Stop()
	for s := 0; s < limit && ctx.Err() == nil; s++ {
		sid := fmt.Sprintf("%s_%d", r.runID, s)
		if _, err := r.api.CreateSession(ctx, openvidu.SessionProperties{CustomSessionID: sid}); err != nil {
			r.fail(fmt.Errorf("create session %s: %w", sid, err))
			break
		}
		r.mu.Lock()
		r.sessions = append(r.sessions, sid)
		r.mu.Unlock()
		var joined sync.WaitGroup
		pubs, subs, mesh := cfg.perSession()
		for i := 0; i < pubs+subs; i++ {
			select {
			case <-ctx.Done():
			case <-pace.C:
			}
			if ctx.Err() != nil {
				break
			}
			m := &member{session: sid, publishes: i < pubs, subscribe: mesh || i >= pubs, subs: map[string]*participant.Subscription{}}
			members.Add(1)
			joined.Add(1)
			go func() {
				defer members.Done()
				r.runMember(media, m, joined.Done)
			}()
		}
		joined.Wait()
		if cfg.UntilCPU > 0 {
			if why := r.saturated(ctx); why != "" {
				res.StoppedBecause = why
				break
			}
		}
	}
	if cfg.UntilCPU > 0 && res.StoppedBecause == "" {
		res.StoppedBecause = fmt.Sprintf("session limit (%d) reached below %g%% CPU", limit, cfg.UntilCPU)
	}

	// Hold the full load and measure it.
	r.waitSubscribed(ctx, 10*time.Second)
	w0, err := r.window()
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
	case <-time.After(cfg.Duration):
	}
	w1, err := r.window()
	if err != nil {
		return nil, err
	}
	r.finish(res, w0, w1)
	return res, nil
}

// runMember joins one participant and keeps it publishing and subscribing
// until ctx ends; joined is called once its publication is up and its first
// subscriptions are made (or it failed). It publishes and subscribes at the
// same time, as an openvidu-browser app does (session.publish and the
// subscriptions of streamCreated run independently), so a join's latency
// does not include its own publication.
func (r *runner) runMember(ctx context.Context, m *member, joined func()) {
	once := sync.OnceFunc(joined)
	defer once()
	published := make(chan struct{})
	var publishing sync.WaitGroup
	defer publishing.Wait()
	asked := time.Now()
	conn, err := r.api.CreateConnection(ctx, m.session, openvidu.ConnectionProperties{Role: "PUBLISHER"})
	if err != nil {
		r.fail(fmt.Errorf("create connection in %s: %w", m.session, err))
		return
	}
	m.tokenAt = time.Now()
	m.restTook = m.tokenAt.Sub(asked)
	p, err := participant.Join(ctx, participant.Config{Token: conn.Token, LoopbackOnly: r.cfg.LoopbackOnly, RelayOnly: r.cfg.RelayOnly, Logger: r.log})
	if err != nil {
		r.fail(fmt.Errorf("join %s: %w", m.session, err))
		return
	}
	m.p = p
	m.waiting = m.subscribe && len(p.RemoteStreams()) > 0
	r.mu.Lock()
	r.members = append(r.members, m)
	r.mu.Unlock()
	publishing.Add(1)
	go func() {
		defer publishing.Done()
		defer close(published)
		if !m.publishes {
			return
		}
		pub, err := p.Publish(ctx, participant.PublishOptions{Video: r.cfg.Video.FPS > 0, Audio: r.cfg.Audio, Simulcast: r.cfg.Simulcast})
		if err != nil {
			r.fail(fmt.Errorf("publish in %s: %w", m.session, err))
			return
		}
		publishing.Add(1)
		go func() {
			defer publishing.Done()
			pub.SendSynthetic(ctx, r.prof)
		}()
	}()
	if !m.subscribe {
		<-published
		once()
		<-ctx.Done()
		return
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	up := published // nil once joined was called
	for {
		r.subscribeNew(ctx, m)
		select {
		case <-ctx.Done():
			return
		case <-up:
			once()
			up = nil
		case <-t.C:
		}
	}
}

// subscribeNew subscribes m to the streams it does not receive yet.
func (r *runner) subscribeNew(ctx context.Context, m *member) {
	for _, sid := range m.p.RemoteStreams() {
		m.mu.Lock()
		_, have := m.subs[sid]
		m.mu.Unlock()
		if have {
			continue
		}
		sub, err := m.p.Subscribe(ctx, sid)
		if err != nil {
			if ctx.Err() == nil {
				r.fail(fmt.Errorf("subscribe to %s: %w", sid, err))
			}
			continue
		}
		m.mu.Lock()
		m.subs[sid] = sub
		if m.first == nil {
			m.first = sub
		}
		m.mu.Unlock()
	}
}

// fail records an error of a member.
func (r *runner) fail(err error) {
	r.log.Warn("load test", "err", err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs++
	if len(r.errList) < maxErrorSamples {
		r.errList = append(r.errList, err.Error())
	}
}

// totals sums the subscriptions' counters and records join latencies that
// became known.
func (r *runner) totals() (received, lost uint64, subscribers, participants int) {
	r.mu.Lock()
	members := append([]*member(nil), r.members...)
	r.mu.Unlock()
	for _, m := range members {
		m.mu.Lock()
		first := time.Time{}
		for _, s := range m.subs {
			st := s.Stats()
			received += st.AudioPackets + st.VideoPackets
			lost += st.Lost
			if !st.FirstPacket.IsZero() && (first.IsZero() || st.FirstPacket.Before(first)) {
				first = st.FirstPacket
			}
		}
		subscribers += len(m.subs)
		if m.waiting && !first.IsZero() {
			m.waiting = false
			steps := joinBreakdown(m)
			r.mu.Lock()
			r.joinLat = append(r.joinLat, float64(first.Sub(m.tokenAt).Microseconds())/1000)
			if r.joinSteps == nil {
				r.joinSteps = map[string][]float64{}
			}
			for name, d := range steps {
				r.joinSteps[name] = append(r.joinSteps[name], float64(d.Microseconds())/1000)
			}
			r.mu.Unlock()
		}
		m.mu.Unlock()
	}
	return received, lost, subscribers, len(members)
}

// sample records a Sample every interval and prints the progress line.
func (r *runner) sample(ctx context.Context, start time.Time) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	first := tick{at: time.Now(), nodes: r.scrapeAll(ctx)}
	r.mu.Lock()
	r.lastTick = first
	r.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		received, lost, subscribers, participants := r.totals()
		now := time.Now()
		nodes := r.scrapeAll(ctx)
		r.mu.Lock()
		prev := r.lastTick
		s := Sample{AtS: now.Sub(start).Seconds(), Participants: participants, Subscribers: subscribers}
		if dt := now.Sub(prev.at).Seconds(); dt > 0 {
			s.PacketsPerSecond = float64(received-prev.received) / dt
		}
		s.LossRatio = lossRatio(received-prev.received, lost-prev.lost)
		for id, c := range nodes {
			if p, ok := prev.nodes[id]; ok {
				if cpu, _, _, ok := nodeUsage(p, c); ok && cpu > s.NodeCPUPercent {
					s.NodeCPUPercent = cpu
				}
			}
		}
		r.timeline = append(r.timeline, s)
		r.lastTick = tick{at: now, received: received, lost: lost, nodes: nodes}
		r.mu.Unlock()
		if r.cfg.Progress != nil {
			fmt.Fprintf(r.cfg.Progress, "\r%6.0fs  participants %4d  subscriptions %5d  received %8.0f pkt/s  loss %6.3f%%  node CPU %5.1f%%  ",
				s.AtS, s.Participants, s.Subscribers, s.PacketsPerSecond, 100*s.LossRatio, s.NodeCPUPercent)
		}
	}
}

// refreshNodes lists the running media nodes and their URIs.
func (r *runner) refreshNodes(ctx context.Context) error {
	nodes, err := r.api.MediaNodes(ctx, false)
	if err != nil {
		return fmt.Errorf("list media nodes: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range nodes {
		if n.URI != nil && n.Status == openvidu.NodeRunning {
			r.nodes[n.ID] = *n.URI
		}
	}
	if len(r.nodes) == 0 {
		return errors.New("the cluster has no running media node")
	}
	return nil
}

// scrapeAll reads every known node's counters (unreachable ones are left
// out: their CPU does not count).
func (r *runner) scrapeAll(ctx context.Context) map[string]nodeCounters {
	r.mu.Lock()
	nodes := make(map[string]string, len(r.nodes))
	for id, uri := range r.nodes {
		nodes[id] = uri
	}
	r.mu.Unlock()
	out := map[string]nodeCounters{}
	for id, uri := range nodes {
		c, err := scrapeNode(ctx, r.scraper, uri, r.cfg.ClusterSecret)
		if err != nil {
			r.log.Debug("scrape media node", "node", id, "err", err)
			continue
		}
		out[id] = c
	}
	return out
}

// saturated waits for a new session's load to settle and says why no
// session should be added ("" to go on).
func (r *runner) saturated(ctx context.Context) string {
	select {
	case <-ctx.Done():
		return "interrupted"
	case <-time.After(settle):
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.timeline)
	if n == 0 {
		return ""
	}
	// The last two samples: one spike or dip does not decide.
	from := max(0, n-2)
	cpu, loss := 0.0, 0.0
	for _, s := range r.timeline[from:] {
		cpu += s.NodeCPUPercent
		loss = max(loss, s.LossRatio)
	}
	cpu /= float64(n - from)
	switch {
	case cpu >= r.cfg.UntilCPU:
		return fmt.Sprintf("media node CPU %.1f%% >= %g%%", cpu, r.cfg.UntilCPU)
	case loss > r.cfg.MaxLoss:
		return fmt.Sprintf("packet loss %.2f%% > %.2f%%", 100*loss, 100*r.cfg.MaxLoss)
	}
	return ""
}

// waitSubscribed waits until every member receives every stream it should,
// or timeout.
func (r *runner) waitSubscribed(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.missing() == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// missing counts the subscriptions not established yet.
func (r *runner) missing() int {
	r.mu.Lock()
	members := append([]*member(nil), r.members...)
	r.mu.Unlock()
	n := 0
	for _, m := range members {
		if !m.subscribe {
			continue
		}
		streams := len(m.p.RemoteStreams())
		m.mu.Lock()
		n += max(0, streams-len(m.subs))
		m.mu.Unlock()
	}
	return n
}

// windowMark is the state at one end of the measurement window.
type windowMark struct {
	perSub         map[*participant.Subscription]uint64
	at             time.Time
	received, lost uint64
	nodes          map[string]nodeCounters
	generatorCPU   float64 // seconds
}

func (r *runner) window() (windowMark, error) {
	received, lost, _, _ := r.totals()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return windowMark{}, fmt.Errorf("own CPU time: %w", err)
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	return windowMark{at: time.Now(), received: received, lost: lost, perSub: r.perSubscription(),
		nodes: r.scrapeAll(context.Background()), generatorCPU: cpu}, nil
}

// perSubscription returns every subscription's received packets.
func (r *runner) perSubscription() map[*participant.Subscription]uint64 {
	r.mu.Lock()
	members := append([]*member(nil), r.members...)
	r.mu.Unlock()
	out := map[*participant.Subscription]uint64{}
	for _, m := range members {
		m.mu.Lock()
		for _, s := range m.subs {
			st := s.Stats()
			out[s] = st.AudioPackets + st.VideoPackets
		}
		m.mu.Unlock()
	}
	return out
}

// finish fills the result from the window's two ends and the run's state.
func (r *runner) finish(res *Result, a, b windowMark) {
	received, lost, subscribers, _ := r.totals()
	r.mu.Lock()
	defer r.mu.Unlock()
	res.Sessions = len(r.sessions)
	for _, m := range r.members {
		if m.publishes {
			res.Publishers++
		}
	}
	res.Subscribers = subscribers
	for sub, n := range b.perSub {
		if n == a.perSub[sub] {
			res.SubscriptionsWithoutMedia++
		}
	}
	res.ReceivedPackets, res.LostPackets = received, lost
	if r.cfg.Simulcast {
		res.LayersReceived = map[string]int{}
		for sub := range b.perSub {
			width := "unknown"
			if w := sub.Stats().Width; w > 0 {
				width = strconv.Itoa(w)
			}
			res.LayersReceived[width]++
		}
	}
	res.PacketLossRatio = lossRatio(b.received-a.received, b.lost-a.lost)
	res.JoinLatencyMS = percentiles(r.joinLat)
	for _, name := range JoinSteps() {
		if v := r.joinSteps[name]; len(v) > 0 {
			res.JoinStepsMS = append(res.JoinStepsMS, StepPercentiles{Step: name, Percentiles: percentiles(v)})
		}
	}
	res.Errors, res.ErrorList = r.errs, r.errList
	res.Timeline = r.timeline
	wall := b.at.Sub(a.at).Seconds()
	res.WindowSeconds = wall
	var cpuSec, fwd, fwdBytes, cpus float64
	for id, end := range b.nodes {
		begin, ok := a.nodes[id]
		if !ok || end.cpuSeconds < begin.cpuSeconds || end.forwarded < begin.forwarded {
			continue
		}
		cpuSec += end.cpuSeconds - begin.cpuSeconds
		fwd += end.forwarded - begin.forwarded
		fwdBytes += end.forwardedBytes - begin.forwardedBytes
		cpus += end.cpus
	}
	if wall > 0 && cpus > 0 {
		res.MediaNodeCPUPercent = 100 * cpuSec / wall / cpus
		res.MediaNodeForwardedPacketsPerSecond = fwd / wall
		res.MediaNodeCPUs = cpus
		res.GeneratorCPUPercent = 100 * (b.generatorCPU - a.generatorCPU) / wall / float64(runtime.GOMAXPROCS(0))
	}
	if fwd > 0 {
		res.MediaNodeCPUMicrosPerForwardedPacket = cpuSec * 1e6 / fwd
		perStream := r.prof.PacketsPerSecond()
		if r.cfg.Audio {
			perStream += 50
		}
		if perStream > 0 {
			res.SubscriberStreamsPerCore = 1e6 / (res.MediaNodeCPUMicrosPerForwardedPacket * perStream)
			res.MediaNodeCPUMicrosPerSubscriberStream = res.MediaNodeCPUMicrosPerForwardedPacket * perStream
		}
	}
	if fwdBytes > 0 {
		res.MediaNodeCPUMicrosPerForwardedMegabit = cpuSec * 1e6 / (fwdBytes * 8 / 1e6)
	}
}

// teardown closes every participant and session.
func (r *runner) teardown() {
	r.mu.Lock()
	members := append([]*member(nil), r.members...)
	sessions := append([]string(nil), r.sessions...)
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = m.p.Leave(ctx)
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sid := range sessions {
		if err := r.api.CloseSession(ctx, sid); err != nil && openvidu.StatusOf(err) != http.StatusNotFound {
			r.log.Warn("close session", "session", sid, "err", err)
		}
	}
}

func (r *runner) params(start time.Time) Params {
	pubs, subs, mesh := r.cfg.perSession()
	p := Params{URL: r.cfg.URL, Sessions: r.cfg.Sessions, Video: "none", Audio: r.cfg.Audio, Simulcast: r.cfg.Simulcast, Ramp: r.cfg.Ramp,
		DurationS: r.cfg.Duration.Seconds(), UntilCPU: r.cfg.UntilCPU, StartedAt: start.UTC().Format(time.RFC3339)}
	if mesh {
		p.Participants = pubs
	} else {
		p.Publishers, p.Subscribers = pubs, subs
	}
	if r.cfg.Video.FPS > 0 {
		p.Video, p.VideoKbps = r.cfg.Video.String(), float64(r.prof.Bitrate)/1000
	}
	return p
}
