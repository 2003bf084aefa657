package store

import (
	"sort"

	"github.com/chorus-rtc/chorus/shared/protocol"
)

func sortConns(m map[protocol.ConnectionID]*Connection) []*Connection {
	out := make([]*Connection, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].ID < out[j].ID
	})
	return out
}
