package main

import (
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
)

// TestClusterListChangeThroughOneInstanceReachesTheOthersWithinASecond
// adds a blacklist entry through instance B of three: A and C apply it
// within a second (their pushd_lists_revision and blacklist size), and no
// instance sends to it.
func TestClusterListChangeThroughOneInstanceReachesTheOthersWithinASecond(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	h.withPostgres()
	h.env["PUSHD_RATELIMIT_GLOBAL_PER_SECOND"] = "30000"
	ds := h.cluster(3)
	o := synth.Options{Campaign: "cluster-lists", Recipients: 3000, IOSPercent: 50}
	victim := o.Recipient(7)
	before := make([]float64, len(ds))
	for i, d := range ds {
		before[i] = scrape(t, d.metrics)["pushd_lists_revision"]
	}
	entry := map[string]string{"kind": "token", "value": victim.Token, "platform": victim.Platform.String(), "reason": "opt_out"}
	start := time.Now()
	if code := h.api(ds[1], "POST", "/api/lists/blacklist/entries", operatorToken, entry, nil); code/100 != 2 {
		t.Fatalf("add through B: %d", code)
	}
	for i, d := range ds {
		testwait.For(t, 10*time.Second, "the entry applied by every instance", func() bool {
			m := scrape(t, d.metrics)
			return m["pushd_lists_revision"] > before[i] && m[`pushd_list_entries{list="blacklist"}`] == 1
		})
	}
	took := time.Since(start)
	t.Logf("blacklist entry added through B applied by all three %v after the request", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("applied by all three after %v, want within 1s", took)
	}
	h.publish(o, dispatcher.Normal)
	c := h.counted(ds[0], o.Campaign, int64(o.Recipients))
	if c.Sent != int64(o.Recipients-1) || c.Filtered != 1 || h.sim.Count(victim.Token) != 0 {
		t.Errorf("counters %+v, victim sent %d times", c, h.sim.Count(victim.Token))
	}
}

// TestClusterKill9OneOfThreeMidCampaign kills one of three instances with
// SIGKILL in the middle of a 30,000-recipient campaign: the other two
// deliver every recipient (none lost), and the duplicates stay within the
// ledger's bound (docs/semantics.md).
func TestClusterKill9OneOfThreeMidCampaign(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{Latency: 2 * time.Millisecond})
	h.withAdmin()
	h.withPostgres()
	h.env["PUSHD_RATELIMIT_GLOBAL_PER_SECOND"] = "1000000"
	ds := h.cluster(3)
	o := h.publish(synth.Options{Campaign: "cluster-kill9", Recipients: 30000, IOSPercent: 50}, dispatcher.Normal)
	h.waitAccepted(6000, 2*time.Minute)
	rate := h.rateNow(1500)
	if err := ds[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = ds[1].stop() // reaps it
	killed := time.Now()
	atKill := accepted(h.sim)
	t.Logf("SIGKILL of instance B at %d of %d accepted, the cluster sending %.0f/s", atKill, o.Recipients, rate)
	if atKill >= o.Recipients {
		t.Fatal("campaign finished before the kill; the test proves nothing")
	}
	took := h.allDelivered(o, 3*time.Minute, killed)
	dups := h.delivered(o, false)
	// One instance's sends in flight, plus what the cluster answered
	// since its last ledger write (20 ms; 50 ms allowed for the write).
	bound := inFlightMax + int(rate*0.05)
	t.Logf("every recipient delivered %v after the kill; %d duplicates (bound %d)", took.Round(time.Millisecond), dups, bound)
	if dups > bound {
		t.Errorf("%d duplicates, over the bound %d", dups, bound)
	}
	h.deadQueueEmpty()
}
