package session

import (
	"context"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// nodeFreshness is how recent a media node's heartbeat must be for it to get
// new sessions.
const nodeFreshness = 3 * time.Second

// loadBucket groups loads that differ by less than this many points: within
// a bucket, the node with fewer sessions wins. Load is sampled once a
// second, so a burst of new sessions would otherwise all land on the node
// that looked idlest a moment ago.
const loadBucket = 5.0

// placeSession chooses the media node for a session's first participant:
// the least-loaded running node (OpenVidu's rule), breaking near-ties by the
// number of sessions the node already hosts.
func (s *Service) placeSession(ctx context.Context) (string, error) {
	nodes, err := s.store.MediaNodes(ctx)
	if err != nil {
		return "", err
	}
	now := time.Now().UnixMilli()
	var candidates []store.MediaNodeInfo
	for _, n := range nodes {
		if n.Status == "running" && now-n.HeartbeatAt <= nodeFreshness.Milliseconds() {
			candidates = append(candidates, n)
		}
	}
	if len(candidates) == 0 {
		return "", &Error{Code: protocol.CodeRoomCannotBeCreated, Status: http.StatusServiceUnavailable,
			Message: "There is no available Media Node where to initialize the session"}
	}
	ids := make([]string, len(candidates))
	for i, n := range candidates {
		ids[i] = n.ID
	}
	counts, err := s.store.NodeSessionCounts(ctx, ids)
	if err != nil {
		return "", err
	}
	return chooseNode(candidates, counts), nil
}

// chooseNode orders candidates by load bucket, then session count, then exact
// load, then id, and returns the first.
func chooseNode(candidates []store.MediaNodeInfo, sessions map[string]int64) string {
	sort.Slice(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		ba, bb := math.Floor(a.Load/loadBucket), math.Floor(b.Load/loadBucket)
		if ba != bb {
			return ba < bb
		}
		if sessions[a.ID] != sessions[b.ID] {
			return sessions[a.ID] < sessions[b.ID]
		}
		if a.Load != b.Load {
			return a.Load < b.Load
		}
		return a.ID < b.ID
	})
	return candidates[0].ID
}
