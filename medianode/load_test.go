package medianode

import (
	"math"
	"testing"
	"time"
)

func TestLoadSamples(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type reading struct {
		ms   int     // time of the reading
		cpu  float64 // CPU seconds read then
		want float64 // load returned
	}
	for _, tc := range []struct {
		name     string
		cpus     float64
		readings []reading
	}{
		{"first reading has no interval", 1, []reading{{0, 5, 0}}},
		{"a tick over a few milliseconds is ignored", 1, []reading{{0, 5, 0}, {3, 5.01, 0}, {1000, 5.5, 50}}},
		{"one busy CPU of two", 2, []reading{{0, 0, 0}, {1000, 1, 50}}},
		{"mean of the last three", 1, []reading{{0, 0, 0}, {1000, 1, 100}, {2000, 1, 50}, {3000, 1, 100.0 / 3}, {4000, 1.3, 10}}},
		{"clamped to 0-100", 1, []reading{{0, 0, 0}, {1000, 3, 100}, {2000, 2, 50}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s loadSamples
			for i, r := range tc.readings {
				if got := s.add(r.cpu, at(r.ms), tc.cpus); math.Abs(got-r.want) > 1e-9 {
					t.Fatalf("reading %d: load %v, want %v", i, got, r.want)
				}
			}
		})
	}
}
