package session

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/chorus-rtc/chorus/master/medianodes"
	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// loadBucket groups loads that differ by less than this many points: within
// a bucket, the node with fewer sessions wins. Load is sampled once a
// second, so a burst of new sessions would otherwise all land on the node
// that looked idlest a moment ago.
const loadBucket = 5.0

// errNoNode means no media node accepts sessions.
var errNoNode = fmt.Errorf("%w: no running media node accepts sessions", medianodes.ErrNoMediaNode)

// placeSession chooses the media node for a session (its first participant,
// or a migration away from node exclude): the least-loaded running node
// (OpenVidu's rule), breaking near-ties by the number of sessions the node
// already hosts. Nodes at or above the load ceiling (MaxLoad) are chosen
// only when every node is.
func (s *Service) placeSession(ctx context.Context, exclude protocol.NodeID) (protocol.NodeID, error) {
	nodes, err := s.store.MediaNodes(ctx)
	if err != nil {
		return "", err
	}
	now := time.Now()
	var candidates, roomy []store.MediaNodeInfo
	for _, n := range nodes {
		if n.ID == exclude || !n.AcceptsSessions(now) {
			continue
		}
		candidates = append(candidates, n)
		if s.cfg.MaxLoad <= 0 || n.Load < s.cfg.MaxLoad {
			roomy = append(roomy, n)
		}
	}
	if len(candidates) == 0 {
		return "", errNoNode
	}
	if len(roomy) > 0 {
		candidates = roomy
	}
	ids := make([]protocol.NodeID, len(candidates))
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
func chooseNode(candidates []store.MediaNodeInfo, sessions map[protocol.NodeID]int64) protocol.NodeID {
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
