// Package loadtest drives a Chorus (or OpenVidu 2) cluster with many Go
// participants, as `chorus loadtest`: sessions and tokens through the REST
// API, joins, publications and subscriptions through the same JSON-RPC as
// openvidu-browser, synthetic media (sdk/participant), and the media nodes'
// own counters (GET /metrics) for the CPU they spend per forwarded packet.
// It depends on shared/ and sdk/ only and talks to the cluster over the
// network.
package loadtest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Config is one load test run.
type Config struct {
	// URL is the cluster's public URL (its proxy), http(s)://host:port.
	URL    string
	Secret string
	// ClusterSecret authenticates the reads of the media nodes' /metrics
	// (their media.listen serves them behind it); empty: none is sent (a
	// node with media.metrics_listen, or OpenVidu).
	ClusterSecret string
	// Sessions is how many sessions to run (with UntilCPU: the most).
	Sessions int
	// Participants makes each session N-to-N: every participant publishes
	// and subscribes to all the others. 0 with Publishers/Subscribers set
	// makes it 1-to-N instead.
	Participants int
	// Publishers and Subscribers per session (1-to-N: every subscriber
	// receives every publisher; publishers receive nothing).
	Publishers, Subscribers int
	// Video is the published video (Width x Height @ FPS); zero FPS: none.
	Video Video
	// Audio adds Opus-sized audio every 20 ms to each publication.
	Audio bool
	// Simulcast publishes the video as three encodings (a quarter, half
	// and full width, participant.SimulcastLayers), as openvidu-browser
	// does with videoSimulcast; the media nodes forward each subscriber
	// one of them (Result.LayersReceived).
	Simulcast bool
	// Ramp is how many participants join per second.
	Ramp float64
	// Duration is how long the full load is held once everyone joined.
	Duration time.Duration
	// UntilCPU (percent, 0-100 of the node's CPUs) keeps adding sessions,
	// one at a time, until a media node's CPU reaches it or packet loss
	// passes MaxLoss; then the load is held for Duration.
	UntilCPU float64
	// MaxLoss is the loss ratio that stops an UntilCPU run (default 0.01).
	MaxLoss float64
	// LoopbackOnly restricts ICE to loopback (a cluster on this machine).
	LoopbackOnly bool
	// RelayOnly makes every participant use relayed candidates only
	// (iceTransportPolicy "relay"), through the TURN servers joinRoom hands
	// out: all media then crosses the cluster's TURN server (its CPU per
	// relayed packet is measured from outside, see BENCHMARKS.md).
	RelayOnly bool
	// Interval is the sampling period of the progress line and the chart.
	Interval time.Duration
	// Progress receives a live status line per Interval (nil: none).
	Progress io.Writer
	Logger   *slog.Logger
}

// Video is a resolution and frame rate.
type Video struct {
	Width, Height, FPS int
}

// String is 540x360@30.
func (v Video) String() string { return fmt.Sprintf("%dx%d@%d", v.Width, v.Height, v.FPS) }

// ParseVideo parses WIDTHxHEIGHT@FPS ("none" or "" for no video).
func ParseVideo(s string) (Video, error) {
	if s == "" || s == "none" {
		return Video{}, nil
	}
	res, fps, ok := strings.Cut(s, "@")
	w, h, ok2 := strings.Cut(res, "x")
	if !ok || !ok2 {
		return Video{}, fmt.Errorf("video %q: want WIDTHxHEIGHT@FPS, e.g. 540x360@30", s)
	}
	var v Video
	var err error
	if v.Width, err = strconv.Atoi(w); err != nil || v.Width <= 0 {
		return Video{}, fmt.Errorf("video %q: bad width", s)
	}
	if v.Height, err = strconv.Atoi(h); err != nil || v.Height <= 0 {
		return Video{}, fmt.Errorf("video %q: bad height", s)
	}
	if v.FPS, err = strconv.Atoi(fps); err != nil || v.FPS <= 0 || v.FPS > 120 {
		return Video{}, fmt.Errorf("video %q: bad frame rate", s)
	}
	return v, nil
}

// perSession returns the session's publishers and subscribers counts and
// whether publishers also subscribe (N-to-N).
func (c *Config) perSession() (pubs, subs int, mesh bool) {
	if c.Participants > 0 {
		return c.Participants, 0, true
	}
	return c.Publishers, c.Subscribers, false
}

// Validate lists every problem of the configuration.
func (c *Config) Validate() error {
	var problems []string
	bad := func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) }
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		bad("--url %q must be http(s)://host:port", c.URL)
	}
	if c.Secret == "" {
		bad("--secret is empty")
	}
	if c.Sessions < 1 {
		bad("--sessions must be at least 1")
	}
	switch pubs, subs, mesh := c.perSession(); {
	case mesh && c.Participants < 2:
		bad("--participants must be at least 2 (N-to-N)")
	case !mesh && (pubs < 1 || subs < 1):
		bad("give --participants (N-to-N) or both --publishers and --subscribers (1-to-N)")
	}
	if c.Participants > 0 && (c.Publishers > 0 || c.Subscribers > 0) {
		bad("--participants and --publishers/--subscribers are exclusive")
	}
	if c.Video.FPS == 0 && !c.Audio {
		bad("no media: set --video or --audio")
	}
	if c.Ramp <= 0 {
		bad("--ramp must be positive")
	}
	if c.Duration <= 0 {
		bad("--duration must be positive")
	}
	if c.UntilCPU < 0 || c.UntilCPU > 100 {
		bad("--until-cpu must be between 0 and 100")
	}
	if c.MaxLoss < 0 || c.MaxLoss >= 1 {
		bad("max loss must be in [0, 1)")
	}
	if len(problems) > 0 {
		return errors.New("invalid load test:\n  - " + strings.Join(problems, "\n  - "))
	}
	return nil
}
