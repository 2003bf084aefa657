package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/chorus-rtc/chorus/loadtest"
)

func loadtestCommand() *cobra.Command {
	var (
		cfg               loadtest.Config
		video             string
		jsonPath, svgPath string
		quiet, debug      bool
	)
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Load a cluster with Go participants sending synthetic media, and measure it",
		Long: `chorus loadtest joins many pion participants to a Chorus (or OpenVidu 2) cluster
through its public URL: sessions and tokens by the REST API, the same JSON-RPC as
openvidu-browser, synthetic VP8 and Opus at the sizes and rates a real encoder
sends. Sessions are N-to-N (--participants) or 1-to-N (--publishers and
--subscribers). It reads the media nodes' own counters (their /metrics, at the
uri GET /openvidu/api/media-nodes gives) for the CPU time they spend per
forwarded packet, and prints a JSON result (--json FILE) and a chart (--svg FILE).

Examples:
  chorus loadtest --url http://localhost:4443 --secret MY_SECRET --sessions 2 --participants 4 --duration 15s
  chorus loadtest --url ... --participants 7 --until-cpu 90 --json out.json --svg out.svg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := loadtest.ParseVideo(video)
			if err != nil {
				return err
			}
			cfg.Video = v
			if !quiet {
				cfg.Progress = cmd.ErrOrStderr()
			}
			level := slog.LevelError
			if debug {
				level = slog.LevelDebug
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			res, err := loadtest.Run(cmd.Context(), cfg)
			if cfg.Progress != nil {
				fmt.Fprintln(cfg.Progress)
			}
			if err != nil {
				return err
			}
			out, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				return err
			}
			if jsonPath != "" {
				if err := os.WriteFile(jsonPath, append(out, '\n'), 0o644); err != nil {
					return err
				}
			}
			if svgPath != "" {
				f, err := os.Create(svgPath)
				if err != nil {
					return err
				}
				if err := loadtest.WriteSVG(f, res); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(),
				"sessions %d, publishers %d, subscriptions %d, join latency p50 %.0f ms p99 %.0f ms, loss %.3f%%, "+
					"media node CPU %.1f%% of %g CPUs, %.2f us per forwarded packet (%.0f pkt/s), %.0f us per forwarded Mbit, ~%.0f subscriber streams per core, generator CPU %.0f%%, errors %d\n",
				res.Sessions, res.Publishers, res.Subscribers, res.JoinLatencyMS.P50, res.JoinLatencyMS.P99, 100*res.PacketLossRatio,
				res.MediaNodeCPUPercent, res.MediaNodeCPUs, res.MediaNodeCPUMicrosPerForwardedPacket, res.MediaNodeForwardedPacketsPerSecond,
				res.MediaNodeCPUMicrosPerForwardedMegabit, res.SubscriberStreamsPerCore, res.GeneratorCPUPercent, res.Errors)
			if len(res.JoinStepsMS) > 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "join steps p50/p99 ms:", loadtest.FormatSteps(res.JoinStepsMS))
			}
			if len(res.LayersReceived) > 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "simulcast layers received (video width: subscriptions):", loadtest.FormatLayers(res.LayersReceived))
			}
			if res.StoppedBecause != "" {
				fmt.Fprintln(cmd.OutOrStdout(), "stopped adding sessions:", res.StoppedBecause)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "http://localhost:4443", "The cluster's public URL (its proxy).")
	f.StringVar(&cfg.Secret, "secret", os.Getenv("OPENVIDU_SECRET"), "OpenVidu secret (default: $OPENVIDU_SECRET).")
	f.StringVar(&cfg.ClusterSecret, "cluster-secret", os.Getenv("CHORUS_CLUSTER_SECRET"), "Cluster secret, to read the media nodes' /metrics (default: $CHORUS_CLUSTER_SECRET; not needed with media.metrics_listen).")
	f.IntVar(&cfg.Sessions, "sessions", 1, "Sessions (with --until-cpu: the most; 1 means no limit).")
	f.IntVar(&cfg.Participants, "participants", 0, "Participants per session, N-to-N: each publishes and receives all the others.")
	f.IntVar(&cfg.Publishers, "publishers", 0, "Publishers per session (1-to-N, with --subscribers).")
	f.IntVar(&cfg.Subscribers, "subscribers", 0, "Subscribers per session (1-to-N): each receives every publisher.")
	f.StringVar(&video, "video", "540x360@30", "Published video, WIDTHxHEIGHT@FPS (bitrate: 0.1 bit per pixel and frame), or none.")
	f.BoolVar(&cfg.Audio, "audio", true, "Publish Opus-sized audio every 20 ms too.")
	f.BoolVar(&cfg.Simulcast, "simulcast", false, "Publish the video as three simulcast encodings (a quarter, half and full width), as openvidu-browser does; reports the layers subscriptions receive.")
	f.Float64Var(&cfg.Ramp, "ramp", 2, "Participants joining per second.")
	f.DurationVar(&cfg.Duration, "duration", 30*time.Second, "How long the full load is held and measured.")
	f.Float64Var(&cfg.UntilCPU, "until-cpu", 0, "Add sessions until a media node's CPU (percent of its CPUs) reaches this, or loss passes 1%.")
	f.BoolVar(&cfg.LoopbackOnly, "loopback", false, "Use only loopback ICE candidates (a cluster on this machine).")
	f.BoolVar(&cfg.RelayOnly, "relay", false, "Participants use relayed candidates only, through the TURN servers joinRoom hands out.")
	f.StringVar(&jsonPath, "json", "", "Write the result as JSON to this file.")
	f.StringVar(&svgPath, "svg", "", "Draw the run (participants, node CPU, loss over time) as SVG to this file.")
	f.BoolVar(&quiet, "quiet", false, "No live progress line.")
	f.BoolVar(&debug, "debug", false, "Log the participants' debug messages.")
	cmd.AddCommand(loadtestRESTCommand())
	return cmd
}

func loadtestRESTCommand() *cobra.Command {
	var cfg loadtest.RESTConfig
	var jsonPath string
	cmd := &cobra.Command{
		Use:   "rest",
		Short: "Measure the REST API: concurrent create session, create connection, close session cycles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := loadtest.RunREST(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out, _ := json.MarshalIndent(res, "", "  ")
			if jsonPath != "" {
				if err := os.WriteFile(jsonPath, append(out, '\n'), 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d workers: %.0f cycles/s (%.0f calls/s); p50/p99 ms: create session %.1f/%.1f, create connection %.1f/%.1f, close %.1f/%.1f; errors %d\n",
				res.Concurrency, res.CyclesPerSecond, res.CallsPerSecond, res.CreateSessionMS.P50, res.CreateSessionMS.P99,
				res.CreateConnectionMS.P50, res.CreateConnectionMS.P99, res.CloseSessionMS.P50, res.CloseSessionMS.P99, res.Errors)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "http://localhost:4443", "The cluster's public URL (its proxy).")
	f.StringVar(&cfg.Secret, "secret", os.Getenv("OPENVIDU_SECRET"), "OpenVidu secret (default: $OPENVIDU_SECRET).")
	f.IntVar(&cfg.Concurrency, "concurrency", 16, "Concurrent workers.")
	f.DurationVar(&cfg.Duration, "duration", 20*time.Second, "How long to run.")
	f.StringVar(&jsonPath, "json", "", "Write the result as JSON to this file.")
	return cmd
}
