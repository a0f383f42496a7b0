package main

// End-to-end tests of several pushd processes sharing one RabbitMQ vhost
// and one PostgreSQL database (issue 10): the cluster-wide rate, campaign
// control from any instance, and the cluster's counters.

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/store/pgtest"
)

// withPostgres gives the harness's instances one fresh PostgreSQL
// database.
func (h *harness) withPostgres() {
	h.t.Helper()
	h.env["PUSHD_STORE_DSN"] = pgtest.FreshDB(h.t)
}

// clusterHarness is a harness for instances sharing one fresh PostgreSQL
// database, with the admin API (and the console's users when console is
// set), and a global limit of globalPerSecond: each instance shows its
// share of it, which says how many instances it counts.
func clusterHarness(t *testing.T, cfg sim.Config, console bool, globalPerSecond string) *harness {
	t.Helper()
	h := newHarness(t, cfg)
	if console {
		h.withConsole()
	} else {
		h.withAdmin()
	}
	h.withPostgres()
	h.env["PUSHD_RATELIMIT_GLOBAL_PER_SECOND"] = globalPerSecond
	return h
}

// cluster spawns n pushd processes (without -race: three of them share
// two cores with the test) on the harness, and waits until each knows
// there are n instances consuming (its share of a cluster-wide limit is
// 1/n).
func (h *harness) cluster(n int) []*daemon {
	h.t.Helper()
	ds := make([]*daemon, n)
	for i := range ds {
		ds[i] = h.spawnBinary(plainBinary, nil)
	}
	for i, d := range ds {
		testwait.For(h.t, 30*time.Second, fmt.Sprintf("instance %d to count %d instances", i, n), func() bool {
			return h.instances(d) == n
		})
	}
	return ds
}

// instances returns how many instances d counts, from its share of the
// global limit (0 while no global limit is set).
func (h *harness) instances(d *daemon) int {
	h.t.Helper()
	var out struct{ Limits []dispatcher.LimitInfo }
	if code := h.api(d, "GET", "/api/limits", viewerToken, nil, &out); code != 200 {
		h.t.Fatalf("GET /api/limits: %d", code)
	}
	for _, l := range out.Limits {
		if l.Level == "global" && l.PerSecond > 0 && l.InstanceShare > 0 {
			return int(l.PerSecond/l.InstanceShare + 0.5)
		}
	}
	return 0
}

// TestClusterKeepsTheCampaignRateAndObeysPauseFromAnyInstance runs three
// pushd processes on one vhost and one PostgreSQL database: a 300/s
// campaign measures 285-315/s in total over 10 s; a pause through
// instance A stops the sends of all three within a second, and a resume
// through instance C restarts them; the counters every instance shows are
// the cluster's.
func TestClusterKeepsTheCampaignRateAndObeysPauseFromAnyInstance(t *testing.T) {
	t.Parallel()
	// A global limit far above the campaign's.
	h := clusterHarness(t, sim.Config{}, false, "30000")
	ds := h.cluster(3)
	a, c := ds[0], ds[2]

	const rate = 300
	o := h.publish(synth.Options{Campaign: "cluster-300", Recipients: 9000, IOSPercent: 50, BatchSize: 250, Rate: rate}, dispatcher.Normal)
	count := func() int { return h.sent(o) }
	none := func(time.Time) float64 { return 1e12 }
	// Past the start (the buckets start full, and each instance starts
	// consuming the campaign's queue on its first batch).
	first := h.watchSends("sends past the start", time.Minute, count, none, reaches(3*rate/2))
	last := h.watchSends("10 s of sends", time.Minute, count, none, func(s sample) bool { return s.at.Sub(first.at) >= 10*time.Second })
	got := rateBetween(first, last)
	t.Logf("3 instances, a %d/s campaign: %d sends in %v = %.1f/s", rate, last.n-first.n, last.at.Sub(first.at).Round(time.Millisecond), got)
	if got < rate*0.95 || got > rate*1.05 {
		t.Errorf("cluster rate %.1f/s, want %d/s within 5%% (285-315)", got, rate)
	}

	// Pause through A: within a second no instance sends.
	h.control(a, o.Campaign, "pause")
	paused := time.Now()
	settled := h.watchSends("a second after the pause", 10*time.Second, count, none, func(s sample) bool { return s.at.Sub(paused) >= time.Second })
	quiet := h.watchSends("two more seconds", 10*time.Second, count, none, func(s sample) bool { return s.at.Sub(settled.at) >= 2*time.Second })
	if quiet.n != settled.n {
		t.Errorf("%d sends between 1 s and 3 s after the pause through instance A", quiet.n-settled.n)
	}
	for i, d := range ds {
		if info := h.campaign(d, o.Campaign); info.Status != dispatcher.StatusPaused {
			t.Errorf("instance %d: status %s after the pause, want paused", i, info.Status)
		}
	}

	// Resume through C: every recipient is delivered, once.
	h.control(c, o.Campaign, "resume")
	h.allDelivered(o, 2*time.Minute, time.Now())
	h.delivered(o, true)
	testwait.For(t, 30*time.Second, "every instance to show the cluster's counters", func() bool {
		for _, d := range ds {
			if info := h.campaign(d, o.Campaign); info.Counters.Sent != int64(o.Recipients) {
				return false
			}
		}
		return true
	})
}
