package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// InspectorLogins are the Inspector's login sessions (the proxy's web
// console): one key per login, named by the SHA-256 of the cookie's token
// (the token itself is never stored), expiring with the login.
//
//	K:inspector:<sha256 hex>   "1", with the login's time to live
type InspectorLogins struct{ keyspace }

// NewInspectorLogins returns the Inspector's login sessions.
func NewInspectorLogins(cfg Config) *InspectorLogins {
	return &InspectorLogins{keyspace{rdb: cfg.Redis, prefix: "chorus:" + cfg.ClusterID}}
}

func (s *InspectorLogins) key(tokenHash string) string { return s.prefix + ":inspector:" + tokenHash }

// Create records a login for ttl.
func (s *InspectorLogins) Create(ctx context.Context, tokenHash string, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.key(tokenHash), "1", ttl).Err(); err != nil {
		return fmt.Errorf("record an Inspector login: %w", err)
	}
	return nil
}

// Valid reports whether a login exists and has not expired.
func (s *InspectorLogins) Valid(ctx context.Context, tokenHash string) (bool, error) {
	err := s.rdb.Get(ctx, s.key(tokenHash)).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check an Inspector login: %w", err)
	}
	return true, nil
}

// Delete ends a login (logging out).
func (s *InspectorLogins) Delete(ctx context.Context, tokenHash string) error {
	if err := s.rdb.Del(ctx, s.key(tokenHash)).Err(); err != nil {
		return fmt.Errorf("end an Inspector login: %w", err)
	}
	return nil
}
