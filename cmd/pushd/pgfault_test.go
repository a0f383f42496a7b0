package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
)

// pgctl runs pg_ctlcluster on each local PostgreSQL cluster (Debian's
// layout, as scripts/services.sh installs it), failing the test when it
// cannot.
func pgctl(t *testing.T, action string) {
	t.Helper()
	versions, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(versions) == 0 {
		t.Fatalf("no local PostgreSQL cluster in /etc/postgresql (scripts/services.sh installs one): %v", err)
	}
	for _, v := range versions {
		out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", v.Name(), "main", action).CombinedOutput()
		if err != nil {
			t.Fatalf("pg_ctlcluster %s main %s: %v\n%s", v.Name(), action, err, strings.TrimSpace(string(out)))
		}
	}
}

// TestFaultPostgresDownMidCampaign stops the PostgreSQL server every test
// shares for a while in the middle of a campaign, so it runs alone: pushd
// reports the store down (not ready, pushd_store_up 0), nothing is lost
// or dead-lettered, it recovers by itself when the server is back, and
// the campaign's counters in the store catch up.
func TestFaultPostgresDownMidCampaign(t *testing.T) {
	h := newHarness(t, sim.Config{Latency: 2 * time.Millisecond})
	h.withAdmin()
	h.withPostgres()
	d := h.start(nil)
	o := h.publish(synth.Options{Campaign: "pg-down", Recipients: 20000, IOSPercent: 50}, dispatcher.Normal)
	h.waitAccepted(4000, 2*time.Minute)

	stopped := false
	t.Cleanup(func() {
		if stopped {
			pgctl(t, "start")
		}
	})
	pgctl(t, "stop")
	stopped = true
	down := time.Now()
	storeUp := func() float64 { return scrape(t, d.metrics)["pushd_store_up"] }
	testwait.For(t, 30*time.Second, "pushd to report the store down", func() bool { return storeUp() == 0 && !ready(d) })
	t.Logf("PostgreSQL stopped at %d accepted; pushd reported it %v later", accepted(h.sim), time.Since(down).Round(time.Millisecond))
	// The outage itself: the server stays down for 3 s, so that pushd's
	// writes fail several times and back off.
	time.Sleep(3 * time.Second)
	pgctl(t, "start")
	stopped = false
	up := time.Now()
	testwait.For(t, time.Minute, "pushd to see the store back by itself", func() bool { return storeUp() == 1 && ready(d) })
	back := time.Since(up)
	took := h.allDelivered(o, 3*time.Minute, up)
	dups := h.delivered(o, false)
	t.Logf("PostgreSQL back: store up and ready again %v after the start, every recipient delivered %v after it; %d duplicates",
		back.Round(time.Millisecond), took.Round(time.Millisecond), dups)
	if dups > inFlightMax {
		t.Errorf("%d duplicates, more than the %d sends that can be in flight", dups, inFlightMax)
	}
	// Every send is counted once the store is back (a duplicate may be
	// counted once or twice, by where the outage cut its run).
	testwait.For(t, time.Minute, "the counters in the store to catch up", func() bool {
		return h.campaign(d, o.Campaign).Counters.Sent >= int64(o.Recipients)
	})
	h.lanesEmpty()
	h.deadQueueEmpty()
}
