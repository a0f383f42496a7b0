package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
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
	testwait.For(t, 30*time.Second, "sends started", func() bool { return h.sentAtLeast(o, 1) })
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

func TestSIGHUPReloadsTheRateLimits(t *testing.T) {
	h := newHarness(t, sim.Config{})
	file := filepath.Join(t.TempDir(), "pushd.yaml")
	write := func(apns string) {
		t.Helper()
		if err := os.WriteFile(file, []byte("ratelimit:\n  apns_per_second: "+apns+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("1000")
	d := h.spawn(nil, "-config", file)
	o := h.publish(synth.Options{Campaign: "sighup", Recipients: 10000, IOSPercent: 100}, dispatcher.Normal)
	testwait.For(t, 30*time.Second, "sends started", func() bool { return h.sentAtLeast(o, 1) })
	rate := func() float64 {
		a := h.sample(o)
		time.Sleep(3 * time.Second)
		return rateBetween(a, h.sample(o))
	}
	write("100")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	r := rate()
	t.Logf("apns_per_second 1000 -> 100 by SIGHUP: measured %.1f/s", r)
	// The limit must hold (at most 5% over). Below, 10% is allowed: on a
	// loaded 2-core machine the race build has been seen to fall short.
	if r < 90 || r > 105 {
		t.Errorf("measured %.1f/s after the reload, want 100/s (90 to 105)", r)
	}
	// A bad file is refused; pushd keeps running with what it had.
	write("-3")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if !ready(d) {
		t.Fatal("pushd not ready after a refused reload")
	}
	if r := rate(); r < 90 || r > 105 {
		t.Errorf("measured %.1f/s after a refused reload, want still 100/s", r)
	}
}
