// Package metrics defines every Prometheus metric pushd exports, on a
// registry injected by the caller, and serves them with the health and
// readiness endpoints.
//
// It implements the metric interfaces that the dispatcher and queue packages
// declare; it holds no state of its own beyond the collectors and takes no
// decisions.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/pushd/pushd/dispatcher"
)

// Metrics holds pushd's collectors. Per-recipient series are resolved once
// at construction so that recording does not allocate.
type Metrics struct {
	batchesReceived    *prometheus.CounterVec
	recipientsReceived *prometheus.CounterVec
	batchesDead        *prometheus.CounterVec
	recipientsDropped  *prometheus.CounterVec
	recipientsDead     *prometheus.CounterVec
	credentialFaults   *prometheus.CounterVec
	inFlight           prometheus.Gauge

	sends    [3][4]prometheus.Counter // [platform][outcome]
	duration [3]prometheus.Observer   // [platform]
	lanes    [2][2]prometheus.Counter // [lane]{batches, recipients}
	toSend   [2]prometheus.Observer   // [lane] enqueue-to-first-send

	cancelled    prometheus.Counter
	filtered     *prometheus.CounterVec
	invalid      *prometheus.CounterVec
	ledgerSkip   prometheus.Counter
	storeUp      prometheus.Gauge
	providerUp   [3]prometheus.Gauge   // [platform]
	breakerOpens [3]prometheus.Counter // [platform]
	reasons      reasonLabels
	throttleWait [4]prometheus.Observer // by throttleLevel
	rateLimit    *prometheus.GaugeVec
	campaigns    *prometheus.GaugeVec

	amqpConnected    prometheus.Gauge
	amqpConnectFails prometheus.Counter
	amqpConsumeFails *prometheus.CounterVec
	amqpConsuming    *prometheus.GaugeVec
	amqpPublished    *prometheus.CounterVec
	panics           prometheus.Counter
}

// New creates and registers the collectors on reg.
func New(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		batchesReceived: f.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_batches_received_total",
			Help: "Batches received from producers, by lane.",
		}, []string{"lane"}),
		recipientsReceived: f.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_recipients_received_total",
			Help: "Recipients in batches received from producers, by lane.",
		}, []string{"lane"}),
		batchesDead: f.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_batches_dead_lettered_total",
			Help: "Batches sent to the dead-letter queue, by reason (malformed, schema, too_large, payload_too_large, render_failed).",
		}, []string{"reason"}),
		recipientsDropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_recipients_dropped_total",
			Help: "Recipients not sent, by reason (malformed_token, unknown_platform, expired).",
		}, []string{"reason"}),
		recipientsDead: f.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_recipients_dead_lettered_total",
			Help: "Recipients dead-lettered after their last attempt, by provider.",
		}, []string{"provider"}),
		credentialFaults: f.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_credential_faults_total",
			Help: "Sends refused because of pushd's own provider credentials (expired APNs token, bad service account), by provider.",
		}, []string{"provider"}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "pushd_inflight_recipients",
			Help: "Recipients submitted to senders and not yet resolved.",
		}),
		amqpConnected: f.NewGauge(prometheus.GaugeOpts{
			Name: "pushd_amqp_connected",
			Help: "1 while connected to RabbitMQ.",
		}),
		panics: f.NewCounter(prometheus.CounterOpts{
			Name: "pushd_handler_panics_total",
			Help: "Deliveries whose handling panicked; each was requeued, and is dead-lettered by the broker after amqp.delivery_limit deliveries.",
		}),
		amqpConnectFails: f.NewCounter(prometheus.CounterOpts{
			Name: "pushd_amqp_connect_failures_total",
			Help: "Failed attempts to connect to RabbitMQ.",
		}),
		amqpConsumeFails: f.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_amqp_consume_failures_total",
			Help: "Consumers that failed to start or stopped unasked, by queue kind (lane, campaign); each is started again after a backoff.",
		}, []string{"queue"}),
		amqpConsuming: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushd_amqp_consumer_up",
			Help: "1 while the lane's consumer is active.",
		}, []string{"lane"}),
		amqpPublished: f.NewCounterVec(prometheus.CounterOpts{
			Name: "pushd_amqp_published_total",
			Help: "Messages pushd published itself, by kind (hold, dead_letter, event, batch: the scheduler's) and result (ok, failed).",
		}, []string{"kind", "result"}),
	}
	m.filtered = f.NewCounterVec(prometheus.CounterOpts{
		Name: "pushd_recipients_filtered_total",
		Help: "Recipients ruled out by a list, by list and by the entry's reason (not_whitelisted for the whitelist; reasons beyond the first 32 distinct, or not short snake_case words, count as other).",
	}, []string{"list", "reason"})
	m.invalid = f.NewCounterVec(prometheus.CounterOpts{
		Name: "pushd_invalid_tokens_total",
		Help: "Tokens a provider reported invalid (token.invalid events published), by provider.",
	}, []string{"provider"})
	m.ledgerSkip = f.NewCounter(prometheus.CounterOpts{
		Name: "pushd_ledger_skipped_total",
		Help: "Recipients of a redelivered or duplicated batch not sent again because the dedup ledger had them resolved.",
	})
	m.storeUp = f.NewGauge(prometheus.GaugeOpts{
		Name: "pushd_store_up",
		Help: "1 while the store takes writes, 0 from a failed write until one succeeds; while 0, batches of new campaigns wait unacknowledged and /readyz answers 503.",
	})
	m.cancelled = f.NewCounter(prometheus.CounterOpts{
		Name: "pushd_recipients_cancelled_total",
		Help: "Recipients not sent because their campaign was cancelled.",
	})
	throttle := f.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushd_throttle_wait_seconds",
		Help:    "Time a recipient waited for a token, by limiter level (global, apns, fcm, campaign).",
		Buckets: []float64{0, .001, .005, .01, .05, .1, .5, 1, 5, 10, 60},
	}, []string{"level"})
	for i, l := range throttleLevels {
		m.throttleWait[i] = throttle.WithLabelValues(l)
	}
	m.rateLimit = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushd_rate_limit_per_second",
		Help: "Current rate of a limiter level on this instance (its share of the cluster's), 0 when unlimited.",
	}, []string{"level"})
	m.campaigns = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushd_campaigns",
		Help: "Campaigns this instance follows, by status.",
	}, []string{"status"})
	for _, s := range dispatcher.Statuses {
		m.campaigns.WithLabelValues(string(s))
	}
	sends := f.NewCounterVec(prometheus.CounterOpts{
		Name: "pushd_sends_total",
		Help: "Send attempts by provider and result (sent, retry, invalid_token, failed).",
	}, []string{"provider", "result"})
	duration := f.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushd_send_duration_seconds",
		Help:    "Time from handing a notification to the provider client to its classified answer.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"provider"})
	for _, p := range dispatcher.Platforms {
		for _, o := range dispatcher.Outcomes {
			m.sends[p][o] = sends.WithLabelValues(p.Provider(), o.String())
		}
		m.duration[p] = duration.WithLabelValues(p.Provider())
		m.credentialFaults.WithLabelValues(p.Provider())
		m.recipientsDead.WithLabelValues(p.Provider())
	}
	toSend := f.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushd_enqueue_to_send_seconds",
		Help:    "Time from a producer publishing a batch (header timestamp_in_ms, else the AMQP timestamp in whole seconds) to the first send of its recipients, by lane. Batches held by not_before, retries and remainders are not observed.",
		Buckets: []float64{.001, .0025, .005, .01, .015, .02, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"lane"})
	providerUp := f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushd_provider_up",
		Help: "1 while the provider's breaker is closed; 0 from the consecutive failures (no answer, or 5xx) that open it to the first answer that closes it. While 0 its recipients wait without spending attempts and one send per dispatcher.breaker_probe probes it.",
	}, []string{"provider"})
	breakerOpens := f.NewCounterVec(prometheus.CounterOpts{
		Name: "pushd_provider_breaker_opened_total",
		Help: "Times the provider's breaker opened (the provider was taken for down), by provider.",
	}, []string{"provider"})
	for _, p := range dispatcher.Platforms {
		m.providerUp[p] = providerUp.WithLabelValues(p.Provider())
		m.providerUp[p].Set(1)
		m.breakerOpens[p] = breakerOpens.WithLabelValues(p.Provider())
	}
	for _, l := range []dispatcher.Lane{dispatcher.Normal, dispatcher.High} {
		m.toSend[l] = toSend.WithLabelValues(l.String())
		m.lanes[l][0] = m.batchesReceived.WithLabelValues(l.String())
		m.lanes[l][1] = m.recipientsReceived.WithLabelValues(l.String())
		m.amqpConsuming.WithLabelValues(l.String())
	}
	for _, kind := range []string{"lane", "campaign"} {
		m.amqpConsumeFails.WithLabelValues(kind)
	}
	return m
}

// BatchReceived implements dispatcher.Metrics.
func (m *Metrics) BatchReceived(l dispatcher.Lane, recipients int) {
	m.lanes[l][0].Inc()
	m.lanes[l][1].Add(float64(recipients))
}

// BatchDeadLettered implements dispatcher.Metrics.
func (m *Metrics) BatchDeadLettered(reason string) { m.batchesDead.WithLabelValues(reason).Inc() }

// RecipientsDropped implements dispatcher.Metrics.
func (m *Metrics) RecipientsDropped(reason string, n int) {
	m.recipientsDropped.WithLabelValues(reason).Add(float64(n))
}

// RecipientsDeadLettered implements dispatcher.Metrics.
func (m *Metrics) RecipientsDeadLettered(p dispatcher.Platform, n int) {
	m.recipientsDead.WithLabelValues(p.Provider()).Add(float64(n))
}

// SendDone implements dispatcher.Metrics.
func (m *Metrics) SendDone(p dispatcher.Platform, o dispatcher.Outcome, d time.Duration) {
	m.sends[p][o].Inc()
	m.duration[p].Observe(d.Seconds())
}

// CredentialFault implements dispatcher.Metrics.
func (m *Metrics) CredentialFault(p dispatcher.Platform) {
	m.credentialFaults.WithLabelValues(p.Provider()).Inc()
}

// InFlight implements dispatcher.Metrics.
func (m *Metrics) InFlight(delta int) { m.inFlight.Add(float64(delta)) }

// throttleLevels are the limiter levels, in throttleWait order.
var throttleLevels = [...]string{dispatcher.LevelGlobal, "apns", "fcm", dispatcher.LevelCampaign}

// RecipientsCancelled implements dispatcher.Metrics.
func (m *Metrics) RecipientsCancelled(n int) { m.cancelled.Add(float64(n)) }

// ThrottleWait implements dispatcher.Metrics.
func (m *Metrics) ThrottleWait(level string, d time.Duration) {
	for i, l := range throttleLevels {
		if l == level {
			m.throttleWait[i].Observe(d.Seconds())
			return
		}
	}
}

// RateLimit implements dispatcher.Metrics.
func (m *Metrics) RateLimit(level string, perSecond float64) {
	m.rateLimit.WithLabelValues(level).Set(perSecond)
}

// Campaigns implements dispatcher.Metrics.
func (m *Metrics) Campaigns(byStatus map[dispatcher.Status]int) {
	for _, s := range dispatcher.Statuses {
		m.campaigns.WithLabelValues(string(s)).Set(float64(byStatus[s]))
	}
}

// RecipientsFiltered implements dispatcher.Metrics.
func (m *Metrics) RecipientsFiltered(list, reason string, n int) {
	m.filtered.WithLabelValues(list, m.reasons.label(reason)).Add(float64(n))
}

// InvalidTokens implements dispatcher.Metrics.
func (m *Metrics) InvalidTokens(p dispatcher.Platform, n int) {
	m.invalid.WithLabelValues(p.Provider()).Add(float64(n))
}

// LedgerSkipped implements dispatcher.Metrics.
func (m *Metrics) LedgerSkipped(n int) { m.ledgerSkip.Add(float64(n)) }

// EnqueueToSend implements dispatcher.Metrics.
func (m *Metrics) EnqueueToSend(l dispatcher.Lane, d time.Duration) {
	m.toSend[l].Observe(max(d, 0).Seconds())
}

// StoreUp implements dispatcher.Metrics.
func (m *Metrics) StoreUp(up bool) { m.storeUp.Set(b2f(up)) }

// ProviderUp implements dispatcher.Metrics.
func (m *Metrics) ProviderUp(p dispatcher.Platform, up bool) {
	if !up {
		m.breakerOpens[p].Inc()
	}
	m.providerUp[p].Set(b2f(up))
}

// reasonLabels keeps the reason label of pushd_recipients_filtered_total a
// bounded set: list entries carry free-text reasons.
type reasonLabels struct {
	mu   sync.Mutex
	seen map[string]bool
}

const maxReasonLabels = 32

func (r *reasonLabels) label(reason string) string {
	if !snakeWord(reason) {
		return "other"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if !r.seen[reason] {
		if len(r.seen) >= maxReasonLabels {
			return "other"
		}
		r.seen[reason] = true
	}
	return reason
}

func snakeWord(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ListSizes registers pushd_list_entries{list} and pushd_lists_revision,
// read from the in-memory lists when scraped.
func ListSizes(reg prometheus.Registerer, size func(list string) int, rev func() int64) {
	f := promauto.With(reg)
	for _, l := range []string{"blacklist", "whitelist"} {
		f.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "pushd_list_entries",
			Help:        "Entries of a list in this instance's in-memory index.",
			ConstLabels: prometheus.Labels{"list": l},
		}, func() float64 { return float64(size(l)) })
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushd_lists_revision",
		Help: "Revision of the last list change this instance applied; equal on every instance once a change has reached them all.",
	}, func() float64 { return float64(rev()) })
}

// Connected implements queue.Metrics.
func (m *Metrics) Connected(up bool) { m.amqpConnected.Set(b2f(up)) }

// ConnectFailed implements queue.Metrics.
func (m *Metrics) ConnectFailed() { m.amqpConnectFails.Inc() }

// ConsumeFailed implements queue.Metrics.
func (m *Metrics) ConsumeFailed(kind string) { m.amqpConsumeFails.WithLabelValues(kind).Inc() }

// HandlerPanicked implements queue.Metrics.
func (m *Metrics) HandlerPanicked() { m.panics.Inc() }

// Consuming implements queue.Metrics.
func (m *Metrics) Consuming(l dispatcher.Lane, up bool) {
	m.amqpConsuming.WithLabelValues(l.String()).Set(b2f(up))
}

// Published implements queue.Metrics.
func (m *Metrics) Published(kind string, ok bool) {
	result := "ok"
	if !ok {
		result = "failed"
	}
	m.amqpPublished.WithLabelValues(kind, result).Inc()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
