// Command chorus runs every role of a Chorus cluster: chorus master, chorus
// media, chorus proxy, chorus turn, and chorus dev for a whole local cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/chorus-rtc/chorus/master"
	"github.com/chorus-rtc/chorus/medianode"
	"github.com/chorus-rtc/chorus/proxy"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/store"
	"github.com/chorus-rtc/chorus/turn"
)

func main() {
	gin.SetMode(gin.ReleaseMode)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chorus:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "chorus",
		Short: "Chorus: an open, highly available OpenVidu 2.x cluster in Go",
		Long: `Chorus runs OpenVidu 2.x applications unchanged on a highly available cluster:
stateless masters (REST API and WebSocket signaling) sharing state in Redis,
pion media nodes, and a proxy in front of the masters.

Configuration comes from defaults, a YAML file (--config), environment
variables (CHORUS_*, and OpenVidu's own names such as OPENVIDU_SECRET) and
flags, in increasing order of precedence.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		roleCommand(config.RoleMaster, "master", "Run a master node: OpenVidu REST API and JSON-RPC WebSocket signaling",
			func(ctx context.Context, cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger) error {
				m, err := master.New(ctx, master.Config{Cluster: cfg, Redis: rdb, Logger: log})
				if err != nil {
					return err
				}
				return m.Run(ctx)
			}),
		roleCommand(config.RoleMedia, "media", "Run a media node: a pion WebRTC SFU",
			func(ctx context.Context, cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger) error {
				n, err := medianode.New(medianode.Config{Cluster: cfg, Redis: rdb, Logger: log})
				if err != nil {
					return err
				}
				return n.Run(ctx)
			}),
		roleCommand(config.RoleProxy, "proxy", "Run the proxy: the public entry point balancing over the masters",
			func(ctx context.Context, cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger) error {
				p, err := proxy.New(proxy.Config{Cluster: cfg, Redis: rdb, Logger: log})
				if err != nil {
					return err
				}
				return p.Run(ctx)
			}),
		roleCommand(config.RoleTurn, "turn", "Run a TURN server relaying (only) to the cluster's media nodes",
			func(ctx context.Context, cfg *config.Config, rdb redis.UniversalClient, log *slog.Logger) error {
				r, err := turn.NewRole(turn.RoleConfig{Cluster: cfg, Redis: rdb, Logger: log})
				if err != nil {
					return err
				}
				return r.Run(ctx)
			}),
		roleCommand(config.RoleRecorder, "recorder", "Run a recorder: recording workers that join sessions as OpenVidu's hidden recorder participant and render with FFmpeg",
			runRecorder),
		devCommand(),
		eventsCommand(),
		configCommand(),
		autoscaleCommand(),
		healthcheckCommand(),
		loadtestCommand(),
	)
	return root
}

// roleCommand builds the command of a long-running role: its flags come from
// the configuration key table. It validates the configuration, connects to
// Redis and stops at once when Redis refuses the credentials or the TLS
// handshake (a Redis that does not answer yet is only logged: the roles
// ride out outages).
func roleCommand(role config.Role, use, short string, run func(context.Context, *config.Config, redis.UniversalClient, *slog.Logger) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cmd.Flags(), role, os.Environ())
			if err != nil {
				return err
			}
			if err := cfg.Validate(role); err != nil {
				return err
			}
			log := cfg.Log.NewLogger(os.Stderr).With("role", string(role))
			rdb, err := store.NewClient(cfg.Redis)
			if err != nil {
				return err
			}
			defer rdb.Close()
			if err := checkRedis(cmd.Context(), rdb, cfg.Redis, log); err != nil {
				return err
			}
			err = run(cmd.Context(), cfg, rdb, log)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	config.RegisterFlags(cmd.Flags(), role)
	return cmd
}

// checkRedis pings Redis once at start-up: wrong credentials or TLS settings
// are an error (they will not fix themselves), an unreachable Redis a
// warning.
func checkRedis(ctx context.Context, rdb redis.UniversalClient, cfg config.Redis, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+time.Second)
	defer cancel()
	err := store.Check(ctx, rdb, cfg)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrRedisAuth), errors.Is(err, store.ErrRedisTLS):
		return err
	}
	log.Warn("redis does not answer yet", "err", err)
	return nil
}
