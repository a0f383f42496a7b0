package main

import (
	"fmt"
	"net/http"
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
	h := clusterHarness(t, sim.Config{}, false, "30000")
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
	h := clusterHarness(t, sim.Config{Latency: 2 * time.Millisecond}, false, "1000000")
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

// TestClusterScheduledThroughOneInstanceFiresOnce schedules a console
// campaign through instance C of three, whose schedulers all compete for
// it: exactly one instance claims and publishes it (the scheduler's
// started count over the cluster is 1, each batch id reaches the lane
// once), every recipient is delivered once, and all three show it
// finished with the cluster's counters.
func TestClusterScheduledThroughOneInstanceFiresOnce(t *testing.T) {
	t.Parallel()
	h := clusterHarness(t, sim.Config{}, true, "30000")
	ds := h.cluster(3)
	c := ds[2]
	tp := h.tap()
	o := synth.Options{Campaign: "cluster-sched", Recipients: 3000, IOSPercent: 50}
	aud := h.uploadAudience(c, o, nil)
	id := h.newCampaign(c, map[string]any{"id": "cluster-sched", "name": "Cluster schedule", "audience": aud})
	sendAt := time.Now().Add(3 * time.Second).UTC().Truncate(time.Second)
	h.must(c, http.StatusOK, "PUT", "/api/campaigns/"+id, operatorToken, map[string]any{
		"name": "Cluster schedule", "audience": aud,
		"notification": map[string]any{"title": "Hello", "body": "안녕하세요 👋", "apns": map[string]any{"topic": "com.example.app"}},
		"send_at":      sendAt.Format("2006-01-02T15:04:05"), "time_zone": "UTC",
	}, nil)
	h.must(c, http.StatusOK, "POST", "/api/campaigns/"+id+"/schedule", operatorToken, nil, nil)

	h.allDelivered(o, 2*time.Minute, sendAt)
	if dups := h.delivered(o, true); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	for i, d := range ds {
		testwait.For(t, 30*time.Second, fmt.Sprintf("instance %d to show the campaign finished", i), func() bool {
			cc := h.consoleCampaign(d, id)
			return cc.Status == "finished" && cc.Counters.Sent == int64(o.Recipients)
		})
	}
	started := 0.0
	for _, d := range ds {
		started += scrape(t, d.metrics)["pushd_scheduler_started_total"]
	}
	if started != 1 {
		t.Errorf("the cluster's schedulers started the campaign %v times, want 1", started)
	}
	if again := publishedOnce(t, tp.batches(), o); len(again) > 0 {
		t.Errorf("batches published more than once: %v", again)
	}
	h.countersAddUp()
}

// TestClusterRateHoldsWhenAnInstanceStopsOrStarts runs a 300/s campaign
// on three instances, stops one of them (SIGTERM) 3 s into a 10 s window,
// then starts a new one 3 s into the next: the cluster's rate over each
// window stays within 5% of 300/s, as the remaining (or new) instances
// take their share of the campaign's rate.
func TestClusterRateHoldsWhenAnInstanceStopsOrStarts(t *testing.T) {
	t.Parallel()
	h := clusterHarness(t, sim.Config{}, false, "30000")
	ds := h.cluster(3)

	const rate = 300
	o := h.publish(synth.Options{Campaign: "cluster-churn", Recipients: 12000, IOSPercent: 50, BatchSize: 250, Rate: rate}, dispatcher.Normal)
	count := func() int { return h.sent(o) }
	none := func(time.Time) float64 { return 1e12 }
	window := func(what string, event func()) {
		start := h.watchSends("sends past the start", time.Minute, count, none, reaches(0))
		h.watchSends("3 s into the window", 10*time.Second, count, none, func(s sample) bool { return s.at.Sub(start.at) >= 3*time.Second })
		event()
		end := h.watchSends("the end of the window", time.Minute, count, none, func(s sample) bool { return s.at.Sub(start.at) >= 10*time.Second })
		got := rateBetween(start, end)
		t.Logf("%s 3 s into a 10 s window: %d sends in %v = %.1f/s", what, end.n-start.n, end.at.Sub(start.at).Round(time.Millisecond), got)
		if got < rate*0.95 || got > rate*1.05 {
			t.Errorf("%s: cluster rate %.1f/s over the window, want %d/s within 5%% (285-315)", what, got, rate)
		}
	}
	h.watchSends("sends past the start", time.Minute, count, none, reaches(3*rate/2))
	stopped := make(chan error, 1)
	window("instance B stopped (SIGTERM)", func() { go func() { stopped <- ds[1].stop() }() })
	if err := <-stopped; err != nil {
		t.Errorf("instance B: %v", err)
	}
	window("instance D started", func() { h.spawnBinary(plainBinary, nil) })
	h.control(ds[0], o.Campaign, "cancel")
}
