// Package netquality runs OpenVidu Pro's network quality API on a master
// (OPENVIDU_PRO_NETWORK_QUALITY; ../shared/openvidu-docs/more/network-quality.md):
// every interval, the master that holds the media node controller's lease
// asks each running media node for the levels of its publishing
// connections (mediaapi.Client.NetworkQuality: the node rates them from
// RTCP, see medianode/netquality) and hands each session's levels to the
// sessions service, which records them and notifies the session's
// participants of each change (networkQualityLevelChanged). Only one
// master polls at a time, so a node's intervals are the configured one.
package netquality

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/chorus-rtc/chorus/shared/mediaapi"
	"github.com/chorus-rtc/chorus/shared/protocol"
)

// Config configures a Monitor.
type Config struct {
	// Interval between two polls (OPENVIDU_PRO_NETWORK_QUALITY_INTERVAL).
	Interval time.Duration
	// Leading reports whether this master holds the controller's lease.
	Leading func() bool
	// Nodes returns the internal URLs of the media nodes to poll (running
	// and not crashed).
	Nodes func(ctx context.Context) ([]string, error)
	// HTTPClient and ClusterSecret call the nodes.
	HTTPClient    *http.Client
	ClusterSecret string
	// Apply records a session's levels and notifies its participants
	// (session.Service.SetNetworkQuality).
	Apply  func(ctx context.Context, sid protocol.SessionID, levels map[protocol.ConnectionID]int) error
	Logger *slog.Logger
}

// Monitor polls the media nodes for network quality levels.
type Monitor struct {
	cfg Config
	log *slog.Logger
}

// New returns a monitor.
func New(cfg Config) *Monitor {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Monitor{cfg: cfg, log: cfg.Logger}
}

// Run polls every interval while this master leads, until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if m.cfg.Leading() {
			m.Poll(ctx)
		}
	}
}

// Poll asks every node at once (each call bounded by the interval) and
// applies what they answered, session by session. A node that fails to
// answer is skipped until the next poll: its levels are then computed
// over both intervals.
func (m *Monitor) Poll(ctx context.Context) {
	uris, err := m.cfg.Nodes(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("network quality: list media nodes", "err", err)
		}
		return
	}
	pctx, cancel := context.WithTimeout(ctx, m.cfg.Interval)
	defer cancel()
	var mu sync.Mutex
	bySession := map[protocol.SessionID]map[protocol.ConnectionID]int{}
	var wg sync.WaitGroup
	for _, uri := range uris {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nq, err := mediaapi.NewClient(m.cfg.HTTPClient, uri, m.cfg.ClusterSecret).NetworkQuality(pctx)
			if err != nil {
				if pctx.Err() == nil {
					m.log.Debug("network quality: ask a media node", "node", uri, "err", err)
				}
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, c := range nq.Connections {
				sid := protocol.SessionID(c.SessionID)
				if bySession[sid] == nil {
					bySession[sid] = map[protocol.ConnectionID]int{}
				}
				bySession[sid][protocol.ConnectionID(c.ConnectionID)] = c.Level
			}
		}()
	}
	wg.Wait()
	for sid, levels := range bySession {
		if err := m.cfg.Apply(ctx, sid, levels); err != nil && ctx.Err() == nil {
			m.log.Warn("network quality: record levels", "session", sid, "err", err)
		}
	}
}
