package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Scheduler holds the scheduler's collectors (pushd_scheduler_*). It
// implements scheduler.Metrics.
type Scheduler struct {
	due           prometheus.Gauge
	started       prometheus.Counter
	missed        prometheus.Counter
	lateness      prometheus.Histogram
	published     prometheus.Counter
	publishErrors prometheus.Counter
}

// NewScheduler creates and registers the scheduler's collectors on reg.
func NewScheduler(reg prometheus.Registerer) *Scheduler {
	f := promauto.With(reg)
	return &Scheduler{
		due: f.NewGauge(prometheus.GaugeOpts{
			Name: "pushd_scheduler_due",
			Help: "Console campaigns this instance claimed and is still publishing.",
		}),
		started: f.NewCounter(prometheus.CounterOpts{
			Name: "pushd_scheduler_started_total",
			Help: "Console campaigns this instance claimed and started publishing, at their time or taken over where an instance that died left them.",
		}),
		missed: f.NewCounter(prometheus.CounterOpts{
			Name: "pushd_scheduler_missed_total",
			Help: "Console campaigns marked missed: their time passed more than scheduler.max_late ago while no pushd ran; they are not sent.",
		}),
		lateness: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "pushd_scheduler_lateness_seconds",
			Help:    "Time from a console campaign's fire_at to the start of its publishing (campaigns taken over at a stored cursor after a crash are not observed).",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 5, 10, 60, 300, 3600},
		}),
		published: f.NewCounter(prometheus.CounterOpts{
			Name: "pushd_scheduler_published_recipients_total",
			Help: "Recipients in batches the scheduler published and the broker confirmed (console campaigns and test sends).",
		}),
		publishErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "pushd_scheduler_publish_errors_total",
			Help: "Failed publishes of scheduler batches; a campaign's batch is retried with backoff until it is confirmed.",
		}),
	}
}

// Due implements scheduler.Metrics.
func (m *Scheduler) Due(delta int) { m.due.Add(float64(delta)) }

// Started implements scheduler.Metrics.
func (m *Scheduler) Started(lateness time.Duration, resumed bool) {
	m.started.Inc()
	if !resumed {
		m.lateness.Observe(lateness.Seconds())
	}
}

// Missed implements scheduler.Metrics.
func (m *Scheduler) Missed(n int) { m.missed.Add(float64(n)) }

// Published implements scheduler.Metrics.
func (m *Scheduler) Published(recipients int) { m.published.Add(float64(recipients)) }

// PublishFailed implements scheduler.Metrics.
func (m *Scheduler) PublishFailed() { m.publishErrors.Inc() }
