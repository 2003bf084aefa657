package session

import (
	"context"
	"slices"

	"github.com/chorus-rtc/chorus/shared/protocol"
	"github.com/chorus-rtc/chorus/shared/store"
)

// SetNetworkQuality records the network quality levels (0 to 5) a media
// node computed for some of a session's publishing connections, and tells
// every active participant of each level that changed with
// networkQualityLevelChanged (OpenVidu Pro's network quality API: the
// event reaches the connection itself and its peers, only on change).
// Connections that left, stopped publishing or are unknown are skipped;
// so is a session that no longer exists. Levels outside 0 to 5 are
// ignored.
func (s *Service) SetNetworkQuality(ctx context.Context, sid protocol.SessionID, levels map[protocol.ConnectionID]int) error {
	return s.update(ctx, sid, func(tx *store.Tx) error {
		if tx.Session == nil {
			return nil
		}
		ids := make([]protocol.ConnectionID, 0, len(levels))
		for cid := range levels {
			ids = append(ids, cid)
		}
		slices.Sort(ids) // one order of notifications, whatever the map's
		for _, cid := range ids {
			level := levels[cid]
			c := tx.Conns[cid]
			if c == nil || !c.Active() || c.Publisher == nil || level < 0 || level > 5 {
				continue
			}
			old := c.NetworkQuality
			if old != nil && *old == level {
				continue
			}
			c.NetworkQuality = &level
			if err := tx.NotifyParticipants("", protocol.NotifyNetworkQualityLevelChanged,
				protocol.NetworkQualityLevelChanged{ConnectionID: cid, NewValue: level, OldValue: old}); err != nil {
				return err
			}
		}
		return nil
	})
}
