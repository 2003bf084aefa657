package metrics

import (
	"context"
	"maps"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRedisHook(t *testing.T) {
	m := New(Config{Master: "master_1"})
	hook := m.RedisHook()
	process := hook.ProcessHook(func(context.Context, redis.Cmder) error { return nil })
	pipeline := hook.ProcessPipelineHook(func(context.Context, []redis.Cmder) error { return nil })
	ctx := context.Background()
	for _, cmd := range []redis.Cmder{
		redis.NewStringCmd(ctx, "GET", "k"),
		redis.NewStringCmd(ctx, "get", "k"),
		redis.NewXStreamSliceCmd(ctx, "xreadgroup", "group", "g", "c", "block", 1000, "streams", "s", ">"), // blocking: left out
		redis.NewXStreamSliceCmd(ctx, "xreadgroup", "group", "g", "c", "streams", "s", ">"),
		redis.NewStringSliceCmd(ctx, "blpop", "l", 0), // blocking: left out
	} {
		_ = process(ctx, cmd)
	}
	_ = pipeline(ctx, []redis.Cmder{redis.NewStatusCmd(ctx, "multi"), redis.NewStatusCmd(ctx, "exec")})
	_ = pipeline(ctx, []redis.Cmder{redis.NewStringCmd(ctx, "get", "a"), redis.NewStringCmd(ctx, "get", "b")})
	want := map[string]uint64{"get": 2, "xreadgroup": 1, "multi": 1, "pipeline": 1}
	if got := commandCounts(t, m); !maps.Equal(got, want) {
		t.Errorf("observations by command: %v, want %v", got, want)
	}
}

// commandCounts reads each command's histogram sample count from the
// registry's output.
func commandCounts(t *testing.T, m *Metrics) map[string]uint64 {
	t.Helper()
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, f := range families {
		if f.GetName() != "chorus_master_redis_command_duration_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "command" {
					out[l.GetValue()] = s.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return out
}

// BenchmarkRedisHook is what the hook adds to each Redis command (a
// command takes ~50-100 us over loopback).
func BenchmarkRedisHook(b *testing.B) {
	m := New(Config{Master: "master_1"})
	process := m.RedisHook().ProcessHook(func(context.Context, redis.Cmder) error { return nil })
	ctx := context.Background()
	cmd := redis.NewStringCmd(ctx, "hgetall", "chorus:c:{ses_X}")
	b.ReportAllocs()
	for b.Loop() {
		_ = process(ctx, cmd)
	}
}
