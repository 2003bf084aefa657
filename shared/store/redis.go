package store

import (
	"github.com/redis/go-redis/v9"

	"github.com/chorus-rtc/chorus/shared/config"
)

// NewClient builds the Redis client the configuration describes: a single
// node, a Sentinel-managed primary (SentinelMasterName set; Addrs are the
// sentinels) or a Redis Cluster (several Addrs), behind one interface.
func NewClient(cfg config.Redis) redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        cfg.Addrs,
		MasterName:   cfg.SentinelMasterName,
		Username:     cfg.Username,
		Password:     cfg.Password,
		DB:           cfg.DB,
		DialTimeout:  cfg.Timeout,
		ReadTimeout:  cfg.Timeout,
		WriteTimeout: cfg.Timeout,
		// Blocking commands are not used; pub/sub has its own connection.
		PoolTimeout: cfg.Timeout,
		// One retry: a request must fail within its timeout (503), not hang
		// while an unresponsive Redis times out again and again.
		MaxRetries: 1,
	})
}
