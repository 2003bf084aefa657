package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/chorus-rtc/chorus/devcluster"
	"github.com/chorus-rtc/chorus/shared/config"
)

func devCommand() *cobra.Command {
	var c devcluster.Config
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole local HA cluster: Redis, 3 masters, 2 media nodes and the proxy, each its own process",
		Long: `chorus dev runs a local highly available cluster on this machine: redis-server
from PATH on a free port (or a 6-process Redis Cluster with --redis-cluster, or
the Redis of --redis-addr), masters, media nodes and
the proxy on --port, each as its own OS process of this binary. The demo page is
served at the printed URL. Environment variables (CHORUS_*, OPENVIDU_*) reach
every process. SIGINT or SIGTERM stops everything it started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.Recorders < 0 {
				return errors.New("--recorders must not be negative")
			}
			if c.RedisCluster && c.RedisAddr != "" {
				return errors.New("--redis-cluster starts a Redis Cluster: it cannot go with --redis-addr")
			}
			if c.Masters < 1 || c.MediaNodes < 1 {
				return errors.New("--masters and --media-nodes must be at least 1")
			}
			if c.Port < 1 || c.Port > 65535 {
				return fmt.Errorf("--port %d is not a port number", c.Port)
			}
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("locate the chorus binary: %w", err)
			}
			c.Binary, c.Env, c.Output = bin, os.Environ(), cmd.ErrOrStderr()
			if c.ClusterSecret == "" {
				c.ClusterSecret = os.Getenv("CHORUS_CLUSTER_SECRET")
			}
			// From the environment, the secret stays out of ps.
			if s := os.Getenv("OPENVIDU_SECRET"); s != "" && !cmd.Flags().Changed("secret") {
				c.Secret = s
			}
			if c.AssetsDir == "" {
				c.AssetsDir = devcluster.DefaultAssetsDir(bin)
			}
			c.Logger = (config.Log{Level: "info", Format: "text"}).NewLogger(cmd.ErrOrStderr()).With("role", "dev")
			return devcluster.Run(cmd.Context(), c)
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.Port, "port", 4443, "Port of the proxy: the cluster's URL is http://<public-host>:<port>")
	f.StringVar(&c.ListenHost, "listen-host", "127.0.0.1", "Address the proxy binds (0.0.0.0 to reach it from the LAN)")
	f.StringVar(&c.PublicHost, "public-host", "localhost", "Host of the cluster's URL and of the tokens, where browsers reach the proxy")
	f.StringVar(&c.Secret, "secret", config.DevSecret, "OpenVidu secret of the cluster (default: $OPENVIDU_SECRET, which ps does not show, else the development secret, refused with a --listen-host other than loopback)")
	f.StringVar(&c.ClusterSecret, "cluster-secret", "", "Internal secret of masters and media nodes (default: a random one; or CHORUS_CLUSTER_SECRET)")
	f.StringVar(&c.RedisAddr, "redis-addr", "", "Use this Redis (host:port, or a Redis Cluster's host:port,host:port,...) instead of starting redis-server")
	f.BoolVar(&c.RedisCluster, "redis-cluster", false, "Start a Redis Cluster (3 primaries, 3 replicas: 6 redis-server processes, formed with redis-cli) instead of one redis-server")
	f.StringVar(&c.RedisSentinelMaster, "redis-sentinel-master-name", "", "With --redis-addr: it is a Sentinel, watching the primary of this name")
	f.IntVar(&c.Masters, "masters", 3, "Number of master processes")
	f.IntVar(&c.MediaNodes, "media-nodes", 2, "Number of media node processes")
	f.IntVar(&c.TurnServers, "turn-servers", 1, "Number of TURN servers (chorus turn) handed to participants; 0: none")
	f.StringVar(&c.MediaIP, "media-ip", "127.0.0.1", "IP the media nodes bind and announce to browsers")
	f.BoolVar(&c.ICETCP, "ice-tcp", true, "Media nodes also take ICE-TCP connections, each on a free TCP port of --media-ip (for browsers whose network blocks UDP)")
	f.StringVar(&c.ClusterID, "cluster-id", "chorus", "Cluster id (namespaces the Redis keys)")
	f.StringVar(&c.StateFile, "state-file", "", `Write {"url","secret","clusterSecret","redis","nodes":[{"role","id","pid","addr"}]} here once the cluster is up`)
	f.BoolVar(&c.Demo, "demo", true, "Serve the demo page and its token endpoint")
	f.StringVar(&c.AssetsDir, "assets-dir", "", "Directory of the demo page and openvidu-browser (default: ./web)")
	f.IntVar(&c.Recorders, "recorders", 0, "Number of recorders (chorus recorder); at least one turns recording on (OPENVIDU_RECORDING; FFmpeg on PATH)")
	f.StringVar(&c.RecordingPath, "recording-path", "", "Recording path of masters and recorders (default with --recorders: a temporary directory removed at exit)")
	return cmd
}
