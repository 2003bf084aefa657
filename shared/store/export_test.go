package store

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// NewClientForTest is a client with short timeouts, for unreachable addresses.
func NewClientForTest(addr string) redis.UniversalClient {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
}
