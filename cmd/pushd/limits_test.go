package main

import (
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push/sim"
)

func TestProviderLimitChangedAtRunTime(t *testing.T) {
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	var out struct{ Limits []dispatcher.LimitInfo }
	if code := h.api(d, "PUT", "/api/limits/apns", operatorToken, map[string]any{"per_second": 200, "burst": 20}, &out); code != 200 {
		t.Fatalf("PUT /api/limits/apns: %d", code)
	}
	o := h.publish(synth.Options{Campaign: "apns-limit", Recipients: 4000, IOSPercent: 100}, dispatcher.Normal)
	waitFor(t, 30*time.Second, "sends started", func() bool { return h.sent(o) > 0 })
	time.Sleep(time.Second)
	a := h.sample(o)
	time.Sleep(3 * time.Second)
	b := h.sample(o)
	rate := rateBetween(a, b)
	t.Logf("apns limited to 200/s at run time: measured %.1f/s over %v", rate, b.at.Sub(a.at).Round(time.Millisecond))
	if rate < 190 || rate > 210 {
		t.Errorf("measured %.1f/s, want 200/s within 5%%", rate)
	}
	// Back to the configuration (no APNs limit): the rest goes at once.
	if code := h.api(d, "DELETE", "/api/limits/apns", operatorToken, nil, &out); code != 200 {
		t.Fatalf("DELETE /api/limits/apns: %d", code)
	}
	reset := time.Now()
	h.allDelivered(o, time.Minute, reset)
	took := time.Since(reset)
	t.Logf("limit removed at %d of %d: the rest delivered in %v", b.n, o.Recipients, took.Round(time.Millisecond))
	if left := o.Recipients - b.n; took > time.Duration(left)*time.Second/200 {
		t.Errorf("the rest took %v after the limit was removed, no faster than at 200/s", took)
	}
	h.delivered(o, true)
}
