package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// internals are the series of a master's own machinery: Redis, its
// transactions, the outboxes it delivers, the events it delivers and its
// checks of the other masters.
type internals struct {
	redisSeconds   *prometheus.HistogramVec
	txConflicts    *prometheus.CounterVec
	outboxSeconds  prometheus.Histogram
	events         *prometheus.CounterVec
	eventSeconds   *prometheus.HistogramVec
	webhookRetries prometheus.Counter
	peerUp         *prometheus.GaugeVec
	peerCrashes    prometheus.Counter
}

// Transactions that Redis' WATCH can make retry (store.Config.OnConflict).
var txKinds = []string{"session", "media_nodes", "event_stream"}

func newInternals(labels prometheus.Labels) *internals {
	// From 1 ms (a notification written at once) to 2 minutes (an
	// outbox held while its participant reconnects, a webhook retried).
	delivery := prometheus.ExponentialBucketsRange(0.001, 120, 16)
	in := &internals{
		redisSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chorus_master_redis_command_duration_seconds", Help: "Latency of this master's Redis commands, by command (pipeline and multi for a pipeline or a transaction's EXEC round trip; blocking reads excluded).", ConstLabels: labels,
			Buckets: prometheus.ExponentialBucketsRange(0.0001, 1, 14),
		}, []string{"command"}),
		txConflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chorus_master_redis_transaction_conflicts_total", Help: "Optimistic transactions that another client's write made retry (WATCH), by transaction: session, media_nodes, event_stream.", ConstLabels: labels,
		}, []string{"tx"}),
		outboxSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "chorus_master_outbox_delivery_lag_seconds", Help: "Time from a participant's notification being committed to its outbox to this master writing it on the participant's WebSocket.", ConstLabels: labels,
			Buckets: delivery,
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chorus_master_events_delivered_total", Help: "Events this master delivered, by sink (webhook, cdr) and outcome (delivered, dead_letter: the webhook refused it until its deadline; failed: the CDR file could not be written).", ConstLabels: labels,
		}, []string{"sink", "outcome"}),
		eventSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chorus_master_event_delivery_latency_seconds", Help: "Time from an event being emitted (committed to the event bus) to its delivery, by sink.", ConstLabels: labels,
			Buckets: delivery,
		}, []string{"sink"}),
		webhookRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chorus_master_webhook_retries_total", Help: "Webhook POSTs this master repeated after a failed attempt (connection error or non-2xx answer).", ConstLabels: labels,
		}),
		peerUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chorus_master_peer_up", Help: "1 if this master's last health check of another master (by incarnation) passed, else 0; a peer that deregistered has no series.", ConstLabels: labels,
		}, []string{"peer"}),
		peerCrashes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chorus_master_peer_crashes_total", Help: "Other masters this master declared crashed after they failed its health checks for master.crash_window. Summed over masters: the cluster's master crashes.", ConstLabels: labels,
		}),
	}
	for _, kind := range txKinds {
		in.txConflicts.WithLabelValues(kind)
	}
	for _, sink := range []string{"webhook", "cdr"} {
		for _, outcome := range []string{"delivered", "dead_letter", "failed"} {
			if sink == "cdr" && outcome == "dead_letter" || sink == "webhook" && outcome == "failed" {
				continue
			}
			in.events.WithLabelValues(sink, outcome)
		}
	}
	return in
}

func (in *internals) collectors() []prometheus.Collector {
	return []prometheus.Collector{in.redisSeconds, in.txConflicts, in.outboxSeconds, in.events, in.eventSeconds, in.webhookRetries, in.peerUp, in.peerCrashes}
}

// TransactionConflict counts one retried transaction (store.Config.OnConflict).
func (m *Metrics) TransactionConflict(tx string) { m.in.txConflicts.WithLabelValues(tx).Inc() }

// OutboxDelivered observes one notification written to a participant
// (signaling.Config.OnOutboxDelivered): lag is since its commit.
func (m *Metrics) OutboxDelivered(lag time.Duration) { m.in.outboxSeconds.Observe(lag.Seconds()) }

// EventDelivered counts one event handed to a sink with its latency since
// it was emitted (eventdelivery.Config.OnDelivered); outcome is delivered,
// dead_letter or failed.
func (m *Metrics) EventDelivered(sink, outcome string, latency time.Duration) {
	m.in.events.WithLabelValues(sink, outcome).Inc()
	if outcome == "delivered" {
		m.in.eventSeconds.WithLabelValues(sink).Observe(latency.Seconds())
	}
}

// WebhookRetried counts one repeated webhook POST.
func (m *Metrics) WebhookRetried() { m.in.webhookRetries.Inc() }

// PeerChecked records the outcome of a health check of another master.
func (m *Metrics) PeerChecked(peer string, healthy bool) {
	v := 0.0
	if healthy {
		v = 1
	}
	m.in.peerUp.WithLabelValues(peer).Set(v)
}

// PeerCrashed counts one other master declared crashed by this one.
func (m *Metrics) PeerCrashed() { m.in.peerCrashes.Inc() }

// PeerGone removes the series of a master that is no longer registered.
func (m *Metrics) PeerGone(peer string) { m.in.peerUp.DeleteLabelValues(peer) }

// RedisHook is a go-redis hook timing every command and pipeline of the
// client it is added to (redis.UniversalClient.AddHook).
func (m *Metrics) RedisHook() redis.Hook { return redisHook{m.in.redisSeconds} }

type redisHook struct{ seconds *prometheus.HistogramVec }

func (redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if blocking(cmd) {
			return next(ctx, cmd) // its latency is how long it waited for data
		}
		start := time.Now()
		err := next(ctx, cmd)
		h.seconds.WithLabelValues(strings.ToLower(cmd.Name())).Observe(time.Since(start).Seconds())
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		name := "pipeline"
		if len(cmds) > 0 && strings.EqualFold(cmds[0].Name(), "multi") {
			name = "multi"
		}
		h.seconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
		return err
	}
}

// blocking reports whether cmd may wait for data (BLOCK of XREAD and
// XREADGROUP, the B*POP family).
func blocking(cmd redis.Cmder) bool {
	name := strings.ToLower(cmd.Name())
	if strings.HasPrefix(name, "bl") || strings.HasPrefix(name, "br") || strings.HasPrefix(name, "bz") {
		return true
	}
	if name != "xread" && name != "xreadgroup" {
		return false
	}
	for _, a := range cmd.Args() {
		if s, ok := a.(string); ok && strings.EqualFold(s, "block") {
			return true
		}
	}
	return false
}
