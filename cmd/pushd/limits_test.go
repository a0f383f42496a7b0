package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
)

// TestProviderLimitChangedAtRunTime sets an APNs limit through the API:
// sends keep to it; removed, sends go faster than it allows.
func TestProviderLimitChangedAtRunTime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	const rate, burst = 200, 20
	// Nothing is sent before the campaign is published, after the limit
	// is in force; the bucket starts full.
	set := time.Now()
	limit := func(at time.Time) float64 { return allows(rate, burst, at.Sub(set)) }
	reqs := func() int { return requests(h.sim) }
	var out struct{ Limits []dispatcher.LimitInfo }
	if code := h.api(d, "PUT", "/api/limits/apns", operatorToken, map[string]any{"per_second": rate, "burst": burst}, &out); code != 200 {
		t.Fatalf("PUT /api/limits/apns: %d", code)
	}
	o := h.publish(synth.Options{Campaign: "apns-limit", Recipients: 4000, IOSPercent: 100}, dispatcher.Normal)
	first := h.watchSends("sends started", 30*time.Second, reqs, limit, reaches(20))
	b := h.watchSends("600 sends more", time.Minute, reqs, limit, reaches(first.n+600))
	t.Logf("apns limited to 200/s at run time: %.1f/s over %v", rateBetween(first, b), b.at.Sub(first.at).Round(time.Millisecond))
	// Back to the configuration (no APNs limit): the sends pass what
	// 200/s could have allowed.
	if code := h.api(d, "DELETE", "/api/limits/apns", operatorToken, nil, &out); code != 200 {
		t.Fatalf("DELETE /api/limits/apns: %d", code)
	}
	reset := time.Now()
	testwait.For(t, time.Minute, "sends past what 200/s allows", func() bool {
		n := reqs()
		return float64(n) > limit(time.Now())
	})
	passed := time.Since(reset)
	took := h.allDelivered(o, time.Minute, reset)
	t.Logf("limit removed at %d of %d: past what 200/s allows after %v, the rest delivered in %v",
		b.n, o.Recipients, passed.Round(time.Millisecond), took.Round(time.Millisecond))
	h.delivered(o, true)
	if got := h.audited(d, "apns"); strings.Join(got, " ") != "limit.set limit.set" {
		t.Errorf("audit log of apns: %v, want the two changes", got)
	}
}

// TestSIGHUPReloadsTheRateLimits lowers the APNs limit of the
// configuration file mid-campaign by SIGHUP, then sends a SIGHUP with a
// bad file: sends keep to the new limit throughout, and go on. pushd runs
// as a process of its own, so the signals reach no other test's pushd.
func TestSIGHUPReloadsTheRateLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	file := filepath.Join(t.TempDir(), "pushd.yaml")
	write := func(apns string) {
		t.Helper()
		if err := os.WriteFile(file, []byte("ratelimit:\n  apns_per_second: "+apns+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var d *daemon
	hup := func(want string) {
		t.Helper()
		n := d.log.count(want)
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testwait.For(t, 30*time.Second, "pushd to log "+want, func() bool { return d.log.count(want) > n })
	}
	reqs := func() int { return requests(h.sim) }
	const rate, burst = 100, 10 // burst: ratelimit.DefaultBurst(100)
	write("1000")
	d = h.spawn(nil, "-config", file)
	published := time.Now()
	h.publish(synth.Options{Campaign: "sighup", Recipients: 10000, IOSPercent: 100}, dispatcher.Normal)
	// At 1000/s the sends pass what 100/s could allow.
	testwait.For(t, 30*time.Second, "sends faster than 100/s", func() bool {
		n := reqs()
		return float64(n) > allows(rate, burst, time.Since(published))
	})

	write("100")
	hup("SIGHUP: rate limits reloaded")
	// From here on, the bucket hands out at most burst + 100/s. Sends
	// that took a token before are in flight (pushd_inflight_recipients),
	// or are about to be counted there: at most one for each delivery of
	// the campaign being handled.
	from := time.Now()
	inFlight := int(scrape(t, d.metrics)["pushd_inflight_recipients"])
	start := sample{time.Now(), reqs()}
	limit := func(at time.Time) float64 {
		return float64(start.n+inFlight+campaignPrefetch) + allows(rate, burst, at.Sub(from))
	}
	last := h.watchSends("300 sends after the reload", time.Minute, reqs, limit, reaches(start.n+inFlight+300))
	t.Logf("apns_per_second 1000 -> 100 by SIGHUP: %.1f/s over %v (%d in flight at the reload)",
		rateBetween(start, last), last.at.Sub(start.at).Round(time.Millisecond), inFlight)

	// A bad file is refused; pushd keeps running with what it had.
	write("-3")
	hup("SIGHUP: configuration refused")
	if !ready(d) {
		t.Fatal("pushd not ready after a refused reload")
	}
	refused := sample{time.Now(), reqs()}
	last = h.watchSends("200 sends after the refused reload", time.Minute, reqs, limit, reaches(refused.n+200))
	t.Logf("after a refused reload: %.1f/s over %v", rateBetween(refused, last), last.at.Sub(refused.at).Round(time.Millisecond))
}
