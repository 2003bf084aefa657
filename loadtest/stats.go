package loadtest

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Result is what a run measured (the --json file).
type Result struct {
	// Parameters of the run.
	Params Params `json:"params"`
	// Publishers and Subscribers count the publications and the
	// subscriptions established.
	Publishers  int `json:"publishers"`
	Subscribers int `json:"subscribers"`
	Sessions    int `json:"sessions"`
	// SubscriptionsWithoutMedia counts established subscriptions that
	// received nothing during the measurement window.
	SubscriptionsWithoutMedia int `json:"subscriptions_without_media"`
	// JoinLatencyMS: from the token to the first media packet of the
	// participant's first subscription, for participants that found streams
	// to subscribe to when they joined.
	JoinLatencyMS Percentiles `json:"join_latency_ms"`
	// JoinStepsMS breaks those joins into their steps (JoinSteps, in
	// order; the first subscription's): how long each took after the one
	// before. Their sum is the join latency plus "rest" (the token's
	// POST, before it).
	JoinStepsMS []StepPercentiles `json:"join_steps_ms,omitempty"`
	// LayersReceived counts the subscriptions by the video width their
	// last keyframe announced ("1280", "640", "320"; "unknown" before any
	// keyframe): with Simulcast, which layer the media nodes forward.
	LayersReceived map[string]int `json:"layers_received,omitempty"`
	// ReceivedPackets counts the RTP packets all subscriptions received.
	ReceivedPackets uint64 `json:"received_packets"`
	// LostPackets counts sequence gaps; PacketLossRatio = lost / (received
	// + lost).
	LostPackets     uint64  `json:"lost_packets"`
	PacketLossRatio float64 `json:"packet_loss_ratio"`
	// Media node figures over the measurement window (full load held):
	// CPU time of the node processes divided by the packets they forwarded,
	// and their CPU use in percent of the CPUs they may use.
	MediaNodeCPUMicrosPerForwardedPacket float64 `json:"media_node_cpu_us_per_forwarded_packet"`
	MediaNodeCPUPercent                  float64 `json:"media_node_cpu_percent"`
	MediaNodeForwardedPacketsPerSecond   float64 `json:"media_node_forwarded_packets_per_second"`
	MediaNodeCPUs                        float64 `json:"media_node_cpus"`
	// MediaNodeCPUMicrosPerForwardedMegabit is the same CPU time per megabit
	// of RTP forwarded (packets' bytes as sent, before SRTP): a figure that
	// does not depend on how a sender cuts its frames into packets.
	MediaNodeCPUMicrosPerForwardedMegabit float64 `json:"media_node_cpu_us_per_forwarded_megabit"`
	// MediaNodeCPUMicrosPerSubscriberStream is the node's CPU per second
	// for one subscriber stream (video and, with audio, its audio), in
	// microseconds per second: the measured cost per packet times the
	// profile's packet rate.
	MediaNodeCPUMicrosPerSubscriberStream float64 `json:"media_node_cpu_us_per_subscriber_stream_second"`
	// SubscriberStreamsPerCore is what the measured cost per packet implies:
	// one core's microseconds divided by the cost of one subscriber stream
	// (the profile's packets per second).
	SubscriberStreamsPerCore float64 `json:"subscriber_streams_per_core"`
	// GeneratorCPUPercent is this process's CPU use during the window, in
	// percent of the CPUs it may use: near 100 the generator, not the node,
	// is the limit.
	GeneratorCPUPercent float64 `json:"generator_cpu_percent"`
	// StoppedBecause says why an --until-cpu run stopped adding sessions.
	StoppedBecause string `json:"stopped_because,omitempty"`
	// Errors counts failed joins, publications and subscriptions.
	Errors    int      `json:"errors"`
	ErrorList []string `json:"error_samples,omitempty"`
	// Timeline has one sample per interval (the chart).
	Timeline []Sample `json:"timeline"`
	// WindowSeconds is the measurement window's length.
	WindowSeconds float64 `json:"window_seconds"`
}

// Params are the run's parameters as given.
type Params struct {
	URL          string  `json:"url"`
	Sessions     int     `json:"sessions"`
	Participants int     `json:"participants,omitempty"`
	Publishers   int     `json:"publishers_per_session,omitempty"`
	Subscribers  int     `json:"subscribers_per_session,omitempty"`
	Video        string  `json:"video"`
	VideoKbps    float64 `json:"video_kbps"`
	Audio        bool    `json:"audio"`
	Simulcast    bool    `json:"simulcast,omitempty"`
	Ramp         float64 `json:"ramp"`
	DurationS    float64 `json:"duration_s"`
	UntilCPU     float64 `json:"until_cpu,omitempty"`
	StartedAt    string  `json:"started_at"`
}

// Sample is the state at one point of the run.
type Sample struct {
	AtS          float64 `json:"t"`
	Participants int     `json:"participants"`
	Subscribers  int     `json:"subscribers"`
	// PacketsPerSecond received by all subscriptions in the interval.
	PacketsPerSecond float64 `json:"packets_per_second"`
	// LossRatio in the interval.
	LossRatio float64 `json:"loss"`
	// NodeCPUPercent: the busiest media node, percent of its CPUs.
	NodeCPUPercent float64 `json:"node_cpu_percent"`
}

// Percentiles summarise a distribution.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// StepPercentiles are one join step's durations.
type StepPercentiles struct {
	Step string `json:"step"`
	Percentiles
}

// FormatSteps is "step p50/p99 ms" for each step, comma-separated.
func FormatSteps(steps []StepPercentiles) string {
	out := make([]string, 0, len(steps))
	for _, s := range steps {
		out = append(out, fmt.Sprintf("%s %.0f/%.0f", s.Step, s.P50, s.P99))
	}
	return strings.Join(out, ", ")
}

// percentiles of v (nearest rank); zeros when v is empty.
func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Percentiles{Count: len(s), P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// lossRatio is lost / (received + lost), 0 without packets.
func lossRatio(received, lost uint64) float64 {
	if received+lost == 0 {
		return 0
	}
	return float64(lost) / float64(received+lost)
}

// nodeCounters are a media node's counters at one time (GET /metrics).
type nodeCounters struct {
	at             time.Time
	cpuSeconds     float64
	forwarded      float64
	forwardedBytes float64
	cpus           float64
}

// nodeUsage is what two readings of a node's counters say about the time
// between them: CPU percent of its CPUs, microseconds of CPU per forwarded
// packet, forwarded packets per second. ok is false when nothing can be said
// (no time elapsed, or a counter went back: the node restarted).
func nodeUsage(a, b nodeCounters) (cpuPercent, usPerPacket, pps float64, ok bool) {
	wall := b.at.Sub(a.at).Seconds()
	cpu, fwd := b.cpuSeconds-a.cpuSeconds, b.forwarded-a.forwarded
	if wall <= 0 || cpu < 0 || fwd < 0 {
		return 0, 0, 0, false
	}
	cpus := max(b.cpus, 1)
	cpuPercent = 100 * cpu / wall / cpus
	pps = fwd / wall
	if fwd > 0 {
		usPerPacket = cpu * 1e6 / fwd
	}
	return cpuPercent, usPerPacket, pps, true
}

// FormatLayers renders LayersReceived widest first: "1280: 12, 320: 2".
func FormatLayers(layers map[string]int) string {
	keys := slices.Collect(maps.Keys(layers))
	slices.SortFunc(keys, func(a, b string) int {
		na, errA := strconv.Atoi(a)
		nb, errB := strconv.Atoi(b)
		if errA != nil || errB != nil {
			return strings.Compare(a, b)
		}
		return nb - na
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, layers[k])
	}
	return strings.Join(parts, ", ")
}
