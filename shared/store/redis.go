package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/config"
)

// NewClient builds the Redis client the configuration describes: a single
// node, a Sentinel-managed primary (SentinelMasterName set; Addrs are the
// sentinels, authenticated with SentinelUsername/SentinelPassword) or a
// Redis Cluster (several Addrs), behind one interface, with the
// configuration's ACL user, password and TLS for every connection. It
// connects lazily (see Check); it fails only when a TLS file cannot be read
// or parsed.
func NewClient(cfg config.Redis) (redis.UniversalClient, error) {
	tlsCfg, err := TLSConfig(cfg.TLS)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:            cfg.Addrs,
		MasterName:       cfg.SentinelMasterName,
		Username:         cfg.Username,
		Password:         cfg.Password,
		SentinelUsername: cfg.SentinelUsername,
		SentinelPassword: cfg.SentinelPassword,
		DB:               cfg.DB,
		TLSConfig:        tlsCfg,
		DialTimeout:      cfg.Timeout,
		ReadTimeout:      cfg.Timeout,
		WriteTimeout:     cfg.Timeout,
		// Blocking commands are not used; pub/sub has its own connection.
		PoolTimeout: cfg.Timeout,
		// One retry: a request must fail within its timeout (503), not hang
		// while an unresponsive Redis times out again and again.
		MaxRetries: 1,
	})
	hook := dialRetry{budget: cfg.Timeout, pause: dialRetryPause}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		hook.cluster = cc
	}
	rdb.AddHook(hook)
	return rdb, nil
}

// dialRetryPause is how often dialRetry tries again.
const dialRetryPause = 100 * time.Millisecond

// dialRetry is a go-redis hook that rides a command or pipeline over a short
// loss of Redis's address: when it fails because no connection could be
// dialled (nothing was sent, so running it again is safe whatever it does),
// it runs again every pause until budget has passed since the first try or
// its context ends, and then returns the last error.
//
// A Sentinel failover needs it: once every connection of the pool has
// failed to dial the old primary, go-redis answers every command with the
// cached dial error and probes the address only once a second, so commands
// kept failing for up to a second after Sentinel had promoted the replica
// (a participant's leaveRoom answered "Cluster state unavailable" in
// TestSentinelFailover). A Redis that stays away still fails each command
// within budget (redis.timeout), as a Redis that stops answering does.
//
// A Redis Cluster failover needs more (cluster set): until a replica is
// promoted the dead primary's slots answer CLUSTERDOWN (or cannot be
// dialled), which is retried too (Redis refused the command), and before
// each new try the client reloads its slot map, which go-redis otherwise
// refreshes only on a MOVED reply or once a minute: without that, the
// clients kept dialling the dead primary for 55 s after the promotion
// (TestRedisClusterFailover).
type dialRetry struct {
	budget, pause time.Duration
	cluster       *redis.ClusterClient
}

func (h dialRetry) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h dialRetry) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return h.retry(ctx, func() error { return next(ctx, cmd) })
	}
}

func (h dialRetry) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		return h.retry(ctx, func() error { return next(ctx, cmds) })
	}
}

func (h dialRetry) retry(ctx context.Context, run func() error) error {
	give := time.Now().Add(h.budget)
	for {
		err := run()
		if !h.retryable(err) || time.Now().Add(h.pause).After(give) {
			return err
		}
		if h.cluster != nil {
			h.cluster.ReloadState(ctx)
		}
		t := time.NewTimer(h.pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// retryable: err says the command was not run, because its node could not
// be reached or (in a Redis Cluster) its slot has no primary yet.
func (h dialRetry) retryable(err error) bool {
	return isDialError(err) || (h.cluster != nil && (redis.IsClusterDownError(err) || redis.IsTryAgainError(err)))
}

// watchRetried is rdb.Watch (an optimistic transaction) ridden over a
// failover as dialRetry rides commands. A Redis Cluster client runs a
// transaction on the node of its keys' slot without its own hooks, so the
// retry happens here; other clients' transactions go through the hook.
func watchRetried(ctx context.Context, rdb redis.UniversalClient, fn func(*redis.Tx) error, keys ...string) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Watch(ctx, fn, keys...)
	}
	h := dialRetry{budget: cc.Options().ReadTimeout, pause: dialRetryPause, cluster: cc}
	return h.retry(ctx, func() error { return cc.Watch(ctx, fn, keys...) })
}

// isDialError reports whether err is a failure to open a connection (refused,
// unreachable, timed out), not a TLS or authentication refusal.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && !isTLSError(err)
}

// TLSConfig is the client TLS configuration of redis.tls (nil when TLS is
// off): TLS 1.2 or later, Redis's certificate checked against CAFile (or
// the system's CAs) and ServerName (or the host dialled), the client
// certificate from CertFile/KeyFile when given. Unreadable or unparsable
// files are an error naming the setting.
func TLSConfig(t config.RedisTLS) (*tls.Config, error) {
	if !t.Enabled {
		return nil, nil
	}
	out := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, refused beyond loopback by config.Validate
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		out.RootCAs = x509.NewCertPool()
		if !out.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.cert_file and key_file: %w", err)
		}
		out.Certificates = []tls.Certificate{cert}
	}
	return out, nil
}

// Errors Check wraps, so that callers can tell a misconfiguration (fatal at
// start-up) from Redis merely not answering yet.
var (
	// ErrRedisAuth: Redis (or a Sentinel) refused the credentials, or the
	// ACL user may not run Chorus's commands.
	ErrRedisAuth = errors.New("redis refused the credentials")
	// ErrRedisTLS: the TLS handshake with Redis failed.
	ErrRedisTLS = errors.New("redis TLS handshake failed")
)

// Check pings Redis once (through Sentinel, or every Cluster node go-redis
// knows) and, when that fails, says which settings to look at: an error
// wrapping ErrRedisAuth or ErrRedisTLS for a misconfiguration, else the
// ping's error wrapped (Redis not reachable yet).
func Check(ctx context.Context, rdb redis.UniversalClient, cfg config.Redis) error {
	err := rdb.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	where := "redis " + strings.Join(cfg.Addrs, ",")
	if cfg.SentinelMasterName != "" {
		where = fmt.Sprintf("redis primary %q through the sentinels %s", cfg.SentinelMasterName, strings.Join(cfg.Addrs, ","))
	}
	msg := err.Error()
	switch {
	case redis.IsAuthError(err) || strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH"):
		hint := "check redis.password (CHORUS_REDIS_PASSWORD) and redis.username (CHORUS_REDIS_USERNAME)"
		if cfg.SentinelMasterName != "" {
			hint += ", and for the sentinels themselves redis.sentinel_password (CHORUS_REDIS_SENTINEL_PASSWORD) and redis.sentinel_username"
		}
		return fmt.Errorf("%s: %w: %s: %w", where, ErrRedisAuth, hint, err)
	case redis.IsPermissionError(err) || strings.Contains(msg, "NOPERM"):
		return fmt.Errorf("%s: %w: the ACL user %q may not run Chorus's commands (see redis.username in the README): %w", where, ErrRedisAuth, cfg.Username, err)
	case isTLSError(err):
		return fmt.Errorf("%s: %w: check redis.tls.* (CHORUS_REDIS_TLS_*: the CA, the client certificate, the server name) and that the address is Redis's tls-port: %w", where, ErrRedisTLS, err)
	case cfg.TLS.Enabled && cfg.TLS.CertFile == "" && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)):
		// TLS 1.3: the client's handshake ends before Redis checks for a
		// client certificate; Redis then sends its alert and closes, and
		// the first command may see the reset rather than the alert.
		return fmt.Errorf("%s: %w: the connection closed right after the TLS handshake: Redis may require a client certificate (redis.tls.cert_file and key_file, CHORUS_REDIS_TLS_CERT_FILE): %w", where, ErrRedisTLS, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// isTLSError reports whether err comes from a TLS handshake: a certificate
// Redis or the client would not accept, or TLS spoken to a plain port.
func isTLSError(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var header tls.RecordHeaderError
	var alert tls.AlertError
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &alert) ||
		strings.Contains(err.Error(), "tls: ")
}
