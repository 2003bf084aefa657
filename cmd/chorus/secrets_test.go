package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chorus-rtc/chorus/master"
	"github.com/chorus-rtc/chorus/medianode"
	"github.com/chorus-rtc/chorus/proxy"
	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/redistest"
	"github.com/chorus-rtc/chorus/shared/store"
)

// freeLoopbackPort is a TCP port nobody listens on.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runChorus runs the binary's command line in this process, as main does,
// until it returns or ctx ends.
func runChorus(ctx context.Context, args ...string) error {
	cmd := rootCommand()
	cmd.SetArgs(args)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	return cmd.ExecuteContext(ctx)
}

// TestRolesOnEveryInterfaceRefuseTheDevelopmentSecret: `chorus master`,
// `chorus proxy` and `chorus media` bound to 0.0.0.0 with MY_SECRET (or a
// short cluster secret) refuse to start, say how to set a secret, and never
// open their port; on 127.0.0.1 the same command line starts.
func TestRolesOnEveryInterfaceRefuseTheDevelopmentSecret(t *testing.T) {
	port := freeLoopbackPort(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"master", []string{"master", "--master-listen", fmt.Sprintf("0.0.0.0:%d", port), "--secret", "MY_SECRET",
			"--cluster-secret", "0123456789abcdefXYZ", "--redis-addrs", "127.0.0.1:1"},
			[]string{"secret (OPENVIDU_SECRET, CHORUS_SECRET or --secret) is MY_SECRET", "openssl rand -hex 24", "reachable from other machines"}},
		{"proxy", []string{"proxy", "--proxy-listen", fmt.Sprintf("0.0.0.0:%d", port), "--secret", "MY_SECRET",
			"--proxy-masters", "http://127.0.0.1:1"},
			[]string{"is MY_SECRET", "proxy.listen 0.0.0.0:"}},
		{"media node", []string{"media", "--media-listen", fmt.Sprintf("0.0.0.0:%d", port), "--cluster-secret", "MY_SECRET",
			"--media-bind-ip", "127.0.0.1", "--media-udp-port", "0", "--redis-addrs", "127.0.0.1:1"},
			[]string{"cluster_secret (CHORUS_CLUSTER_SECRET or --cluster-secret, the same on every master and media node) is MY_SECRET"}},
		{"master without a cluster secret", []string{"master", "--master-listen", fmt.Sprintf("0.0.0.0:%d", port),
			"--secret", "0123456789abcdefXYZ", "--redis-addrs", "127.0.0.1:1"},
			[]string{"cluster_secret (CHORUS_CLUSTER_SECRET or --cluster-secret, the same on every master and media node) is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- runChorus(ctx, tt.args...) }()
			var err error
			select {
			case err = <-errc:
			case <-time.After(5 * time.Second):
				cancel()
				<-errc
				t.Fatal("started instead of refusing")
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
			if c, derr := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); derr == nil {
				c.Close()
				t.Error("the port was opened")
			}
		})
	}
}

// TestRolesRefuseUnsafeSecretsWhenEmbedded: a program that builds a role
// without the command line's validation (master.New, proxy.New,
// medianode.New) meets the same refusal.
func TestRolesRefuseUnsafeSecretsWhenEmbedded(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	load := func(role config.Role) *config.Config {
		cfg, err := config.Load(nil, role, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Secret, cfg.ClusterSecret = config.DevSecret, config.DevClusterSecret
		cfg.Master.Listen, cfg.Proxy.Listen, cfg.Media.Listen = "0.0.0.0:0", "0.0.0.0:0", "0.0.0.0:0"
		return cfg
	}
	_, err := master.New(context.Background(), master.Config{Cluster: load(config.RoleMaster), Logger: log})
	if !errors.Is(err, config.ErrUnsafeSecrets) {
		t.Errorf("master.New: %v", err)
	}
	pc := load(config.RoleProxy)
	pc.Proxy.Masters = []string{"http://127.0.0.1:1"}
	if _, err := proxy.New(proxy.Config{Cluster: pc, Logger: log}); !errors.Is(err, config.ErrUnsafeSecrets) {
		t.Errorf("proxy.New: %v", err)
	}
	mc := load(config.RoleMedia)
	mc.Media.BindIP, mc.Media.UDPPort = "127.0.0.1", 0
	if _, err := medianode.New(medianode.Config{Cluster: mc, Logger: log}); !errors.Is(err, config.ErrUnsafeSecrets) {
		t.Errorf("medianode.New: %v", err)
	}
}

// TestLoopbackRoleStartsWithTheDevelopmentSecret is the control: the proxy
// command line refused on 0.0.0.0 starts on 127.0.0.1 and serves.
func TestLoopbackRoleStartsWithTheDevelopmentSecret(t *testing.T) {
	port := freeLoopbackPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- runChorus(ctx, "proxy", "--proxy-listen", fmt.Sprintf("127.0.0.1:%d", port), "--secret", "MY_SECRET",
			"--proxy-masters", "http://127.0.0.1:1", "--log-level", "error")
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("the loopback proxy exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the loopback proxy never listened")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("stopping: %v", err)
	}
}

// TestRoleStopsOnWrongRedisPassword: a role whose Redis password is wrong
// stops at start-up, saying which setting to fix, instead of running with
// every Redis call failing.
func TestRoleStopsOnWrongRedisPassword(t *testing.T) {
	s := redistest.StartWith(t, redistest.Options{Password: "the-right-password"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := runChorus(ctx, "proxy", "--proxy-listen", fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t)),
		"--redis-addrs", s.Addr, "--redis-password", "a-wrong-password", "--log-level", "error")
	if !errors.Is(err, store.ErrRedisAuth) || !strings.Contains(err.Error(), "CHORUS_REDIS_PASSWORD") {
		t.Fatalf("%v, want a clear Redis authentication error", err)
	}
	if err := runChorus(ctx, "events", "dead-letter", "list", "--redis-addrs", s.Addr, "--redis-password", "the-right-password"); err != nil {
		t.Errorf("the right password: %v", err)
	}
}
