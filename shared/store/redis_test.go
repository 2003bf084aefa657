package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/config"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/redistest"
)

// connect builds the client cfg describes and checks it, as the roles do
// at start-up.
func connect(t *testing.T, cfg config.Redis) (redis.UniversalClient, error) {
	t.Helper()
	rdb, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return rdb, Check(ctx, rdb, cfg)
}

// works runs store operations a master runs at start-up through rdb.
func works(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st := New(Config{Redis: rdb, ClusterID: "auth"})
	if _, err := st.NextMasterEpoch(ctx, "m1"); err != nil {
		t.Fatalf("epoch: %v", err)
	}
	if err := st.RegisterMaster(ctx, MasterInfo{ID: "m1", InternalURL: "http://127.0.0.1:1"}, time.Minute); err != nil {
		t.Fatalf("register: %v", err)
	}
	if alive, _, err := st.Masters(ctx); err != nil || len(alive) != 1 {
		t.Fatalf("masters %v, %v", alive, err)
	}
}

// refused expects err to be the misconfiguration sentinel want, with a
// message naming the settings to look at.
func refused(t *testing.T, err, want error, hints ...string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	t.Logf("refused: %v", err)
	for _, h := range hints {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("%q does not say %q", err, h)
		}
	}
}

func TestRedisPassword(t *testing.T) {
	s := redistest.StartWith(t, redistest.Options{Password: "p4ssw0rd-for-tests"})
	rdb, err := connect(t, s.Config())
	if err != nil {
		t.Fatal(err)
	}
	works(t, rdb)

	wrong := s.Config()
	wrong.Password = "not-the-password"
	_, err = connect(t, wrong)
	refused(t, err, ErrRedisAuth, "CHORUS_REDIS_PASSWORD", "WRONGPASS", s.Addr)

	none := s.Config()
	none.Password = ""
	_, err = connect(t, none)
	refused(t, err, ErrRedisAuth, "CHORUS_REDIS_PASSWORD", "NOAUTH")
}

// TestRedisACLUser: an ACL user limited to Chorus's keys runs the cluster;
// a wrong password or user is refused clearly.
func TestRedisACLUser(t *testing.T) {
	s := redistest.StartWith(t, redistest.Options{Password: "default-user-password",
		Users: []redistest.User{{Name: "chorus", Password: "chorus-user-password", Rules: []string{"~chorus:*", "&*", "+@all", "-@dangerous", "+info"}}}})
	cfg := s.Config()
	cfg.Username, cfg.Password = "chorus", "chorus-user-password"
	rdb, err := connect(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	works(t, rdb)
	// The ACL is in force: the user cannot touch other keys.
	if err := rdb.Set(context.Background(), "other:key", "x", 0).Err(); !redis.IsPermissionError(err) {
		t.Errorf("a key outside chorus:*: %v, want NOPERM", err)
	}

	cfg.Password = "default-user-password" // the default user's, not chorus's
	_, err = connect(t, cfg)
	refused(t, err, ErrRedisAuth, "CHORUS_REDIS_USERNAME", "WRONGPASS")
}

// TestRedisTLS: Redis on its tls-port requiring client certificates, with a
// CA made here: the CA and client certificate connect; no client
// certificate, another CA or a wrong server name fail with a TLS error.
func TestRedisTLS(t *testing.T) {
	certs, err := redistest.MakeCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := redistest.StartWith(t, redistest.Options{TLS: certs, RequireClientCert: true, Password: "tls-and-a-password"})
	rdb, err := connect(t, s.Config())
	if err != nil {
		t.Fatal(err)
	}
	works(t, rdb)

	noCert := s.Config()
	noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
	_, err = connect(t, noCert)
	refused(t, err, ErrRedisTLS, "redis.tls")

	other, err := redistest.MakeCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherCA := s.Config()
	otherCA.TLS.CAFile = other.CAFile
	_, err = connect(t, otherCA)
	refused(t, err, ErrRedisTLS, "certificate")

	wrongName := s.Config()
	wrongName.TLS.ServerName = "redis.example.org"
	_, err = connect(t, wrongName)
	refused(t, err, ErrRedisTLS, "redis.example.org")

	// Development only: any certificate is accepted.
	skip := s.Config()
	skip.TLS.CAFile, skip.TLS.InsecureSkipVerify = other.CAFile, true
	if _, err := connect(t, skip); err != nil {
		t.Errorf("insecure_skip_verify: %v", err)
	}

	// Plain Redis protocol to the TLS port is no way in.
	plain := s.Config()
	plain.TLS = config.RedisTLS{}
	plain.Timeout = 500 * time.Millisecond
	if _, err := connect(t, plain); err == nil {
		t.Error("a plain connection to the TLS port worked")
	}
}

// TestRedisSentinelAuth: a primary with a password behind a sentinel with
// a password of its own; a wrong one of either is refused clearly.
func TestRedisSentinelAuth(t *testing.T) {
	g := redistest.StartSentinelGroupWith(t, redistest.SentinelOptions{Password: "primary-password", SentinelPassword: "sentinel-password"})
	rdb, err := connect(t, g.Config())
	if err != nil {
		t.Fatal(err)
	}
	works(t, rdb)

	wrongSentinel := g.Config()
	wrongSentinel.SentinelPassword = "nope"
	_, err = connect(t, wrongSentinel)
	refused(t, err, ErrRedisAuth, "CHORUS_REDIS_SENTINEL_PASSWORD")

	wrongPrimary := g.Config()
	wrongPrimary.Password = "nope"
	_, err = connect(t, wrongPrimary)
	refused(t, err, ErrRedisAuth, "CHORUS_REDIS_PASSWORD", "WRONGPASS")
}

// TestRedisClusterClientGetsCredentialsAndTLS: several addresses make a
// Redis Cluster client, which gets the same ACL user, password and TLS.
func TestRedisClusterClientGetsCredentialsAndTLS(t *testing.T) {
	certs, err := redistest.MakeCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := NewClient(config.Redis{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}, Username: "chorus", Password: "pw",
		Timeout: time.Second, TLS: config.RedisTLS{Enabled: true, CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile, ServerName: "redis"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("%T, want a cluster client", rdb)
	}
	o := cc.Options()
	if o.Username != "chorus" || o.Password != "pw" || o.TLSConfig == nil || o.TLSConfig.ServerName != "redis" ||
		o.TLSConfig.RootCAs == nil || len(o.TLSConfig.Certificates) != 1 {
		t.Errorf("cluster options: user %q, password %q, TLS %+v", o.Username, o.Password, o.TLSConfig)
	}
}

func TestRedisTLSFilesAreChecked(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		tls  config.RedisTLS
		want string
	}{
		{config.RedisTLS{Enabled: true, CAFile: missing}, "redis.tls.ca_file"},
		{config.RedisTLS{Enabled: true, CertFile: missing, KeyFile: missing}, "redis.tls.cert_file"},
	} {
		if _, err := NewClient(config.Redis{Addrs: []string{"127.0.0.1:1"}, TLS: tc.tls}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.tls, err, tc.want)
		}
	}
}

// TestCommandsRideOverALostAddress: while Redis's address refuses
// connections for less than redis.timeout (a restart, a Sentinel switch),
// commands and transactions wait for it instead of failing, even once
// go-redis caches the dial error for its whole pool; a Redis that stays away
// fails each command within redis.timeout, as Unavailable.
func TestCommandsRideOverALostAddress(t *testing.T) {
	s := redistest.Start(t)
	cfg := s.Config()
	cfg.Timeout = 3 * time.Second // generous: the restart below takes ~0.8 s
	rdb, err := connect(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	works(t, rdb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s.Kill()
	// More commands at once than the pool has connections (PoolSize, 10 per
	// CPU): each one's dial fails, and go-redis then answers from its cached
	// error until a probe, once a second, reaches the address again.
	const n = 60
	errs := make(chan error, n+1)
	start := time.Now()
	for i := range n {
		go func() { errs <- rdb.Set(ctx, fmt.Sprintf("ride:%d", i), i, 0).Err() }()
	}
	st := New(Config{Redis: rdb, ClusterID: "ride"})
	go func() {
		errs <- st.RegisterMaster(ctx, MasterInfo{ID: "m2", InternalURL: "http://127.0.0.1:2"}, time.Minute)
	}()
	time.Sleep(700 * time.Millisecond)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	for range n + 1 {
		if err := <-errs; err != nil {
			t.Errorf("a command while Redis restarted: %v", err)
		}
	}
	t.Logf("%d commands and a transaction issued while Redis was down all done %s after the kill", n, time.Since(start).Round(10*time.Millisecond))
	for i := range n {
		if v, err := rdb.Get(ctx, fmt.Sprintf("ride:%d", i)).Int(); err != nil || v != i {
			t.Fatalf("ride:%d = %d, %v", i, v, err)
		}
	}

	// A Redis that does not come back: each command fails within the budget.
	s.Kill()
	begin := time.Now()
	err = rdb.Get(ctx, "ride:1").Err()
	took := time.Since(begin)
	if !IsUnavailable(err) {
		t.Errorf("with Redis gone: %v, want an unavailable error", err)
	}
	if took < cfg.Timeout-time.Second || took > cfg.Timeout+time.Second {
		t.Errorf("with Redis gone the command failed after %s, want about redis.timeout (%s)", took, cfg.Timeout)
	}
}

// TestClusterFailoverRiddenOver: on a real Redis Cluster (3 primaries, 3
// replicas), the primary serving a session's slot is SIGKILLed while
// commands, pipelines and session transactions keep coming for that slot
// and others. With redis.timeout longer than the promotion, none fails:
// each waits (dialRetry reloads the client's slot map while it retries) and
// runs on the promoted replica. Without the reload, go-redis kept the dead
// primary in its slot map for up to a minute.
func TestClusterFailoverRiddenOver(t *testing.T) {
	c := redistest.StartCluster(t)
	cfg := c.Config()
	cfg.Timeout = 8 * time.Second // beyond the promotion (2.5-3.5 s here)
	rdb, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("several addresses gave a %T, want a Redis Cluster client", rdb)
	}
	st := New(Config{Redis: rdb, ClusterID: "failover"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sessions := []protocol.SessionID{"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"}
	for _, sid := range sessions {
		if err := st.CreateSession(ctx, &Session{ID: sid, CreatedAt: NowMillis()}); err != nil {
			t.Fatal(err)
		}
	}
	victim, err := c.PrimaryFor(ctx, st.Sessions.sessionKey("s0"))
	if err != nil {
		t.Fatal(err)
	}
	// What this test is about is riding over the promotion, not Redis's
	// asynchronous replication (a write the primary acknowledged but had
	// not yet sent to its replica dies with it): the replicas catch up.
	if err := c.WaitReplicated(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	victim.Kill()
	type result struct {
		what string
		err  error
		took time.Duration
	}
	results := make(chan result)
	var n int
	for _, sid := range sessions {
		for i := range 3 {
			n += 3
			go func() {
				start := time.Now()
				err := st.Update(ctx, sid, func(tx *Tx) error {
					cid := protocol.ConnectionID(fmt.Sprintf("c%d", i))
					tx.Conns[cid] = &Connection{ID: cid, SessionID: sid, CreatedAt: NowMillis(), Status: StatusActive}
					return nil
				})
				results <- result{"update " + string(sid), err, time.Since(start)}
			}()
			go func() {
				start := time.Now()
				_, err := st.Load(ctx, sid)
				results <- result{"load " + string(sid), err, time.Since(start)}
			}()
			go func() {
				start := time.Now()
				_, err := st.ListSessionIDs(ctx)
				results <- result{"list", err, time.Since(start)}
			}()
		}
	}
	var slowest time.Duration
	for range n {
		r := <-results
		if r.err != nil {
			t.Errorf("%s during the failover: %v", r.what, r.err)
		}
		slowest = max(slowest, r.took)
	}
	t.Logf("%d commands and transactions issued at the kill all done %s after it", n, slowest.Round(10*time.Millisecond))
	if err := c.WaitHealthy(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, sid := range sessions {
		snap, err := st.Load(ctx, sid)
		if err != nil || len(snap.Conns) != 3 {
			t.Errorf("%s after the failover: %v, %v", sid, snap, err)
		}
	}
	if slowest > 6*time.Second {
		t.Errorf("the slowest call took %s after the kill, want within the promotion (about 3 s) and a slot map reload", slowest)
	}
}
