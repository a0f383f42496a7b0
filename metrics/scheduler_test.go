package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushd/pushd/scheduler"
)

var _ scheduler.Metrics = (*Scheduler)(nil)

func TestSchedulerMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewScheduler(reg)
	m.Due(1)
	m.Due(1)
	m.Due(-1)
	m.Started(1500*time.Millisecond, false)
	m.Started(time.Hour, true) // a take-over: counted, lateness not observed
	m.Missed(2)
	m.Published(1000)
	m.Published(7)
	m.PublishFailed()

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.Gauge != nil:
			got[mf.GetName()] = m.Gauge.GetValue()
		case m.Counter != nil:
			got[mf.GetName()] = m.Counter.GetValue()
		case m.Histogram != nil:
			got[mf.GetName()+"_count"] = float64(m.Histogram.GetSampleCount())
			got[mf.GetName()+"_sum"] = m.Histogram.GetSampleSum()
		}
	}
	want := map[string]float64{
		"pushd_scheduler_due":                        1,
		"pushd_scheduler_started_total":              2,
		"pushd_scheduler_missed_total":               2,
		"pushd_scheduler_lateness_seconds_count":     1,
		"pushd_scheduler_lateness_seconds_sum":       1.5,
		"pushd_scheduler_published_recipients_total": 1007,
		"pushd_scheduler_publish_errors_total":       1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
