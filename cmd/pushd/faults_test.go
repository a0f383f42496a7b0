package main

// Fault injection, end to end: pushd killed with SIGKILL, RabbitMQ
// restarted, the AMQP link reset or silenced through a TCP proxy, the
// simulator failing a quarter of its answers, and the simulator down for
// 30 s. Each test checks that nothing is lost and reports duplicates and
// recovery times (go test -v -run 'Kill9|Broker|Link|ProviderErrors|ProviderDown' ./cmd/pushd).
//
// The faults that stay within a test's own world (its pushd process, its
// proxy, its simulator) run in parallel with the other tests. Those named
// TestFault... reach beyond it, and scripts/test.sh runs them on their own:
// restarting RabbitMQ cuts every test's connections, and a simulator that
// gives up its port for 30 s may not get it back while other tests open
// connections.

import (
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/queue/queuetest"
)

// inFlightMax is how many sends can be in flight with the default config:
// apns.workers + fcm.workers.
const inFlightMax = 256 + 128

func ready(d *daemon) bool {
	resp, err := http.Get("http://" + d.metrics + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// rateNow returns the simulator's accepted sends per second while it
// accepts n more.
func (h *harness) rateNow(n int) float64 {
	h.t.Helper()
	a := sample{time.Now(), accepted(h.sim)}
	h.waitAccepted(a.n+n, time.Minute)
	b := sample{time.Now(), accepted(h.sim)}
	return rateBetween(a, b)
}

// allDelivered waits until every recipient of o was accepted once at
// least, and returns how long that took from since.
func (h *harness) allDelivered(o synth.Options, within time.Duration, since time.Time) time.Duration {
	h.t.Helper()
	testwait.For(h.t, within, "every recipient delivered", func() bool { return h.sentAtLeast(o, o.Recipients) })
	return time.Since(since)
}

// deadQueueEmpty checks that nothing was dead-lettered.
func (h *harness) deadQueueEmpty() {
	h.t.Helper()
	if n := queuetest.Ready(h.t, h.ch, h.top.DeadQueue); n != 0 {
		h.t.Errorf("%d messages dead-lettered", n)
	}
}

// TestKill9MidCampaignThenRestart kills a pushd process of its own.
func TestKill9MidCampaignThenRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{Latency: 2 * time.Millisecond})
	d := h.spawn(nil)
	o := h.publish(synth.Options{Campaign: "kill9", Recipients: 50000, IOSPercent: 50}, dispatcher.Normal)
	h.waitAccepted(10000, 2*time.Minute)
	rate := h.rateNow(2500)
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = d.stop() // reaps the process
	killed := time.Now()
	atKill := accepted(h.sim)
	t.Logf("SIGKILL at %d of %d accepted, sending %.0f/s", atKill, o.Recipients, rate)
	if atKill >= o.Recipients {
		t.Fatal("campaign finished before the kill; the test proves nothing")
	}

	h.spawn(nil)
	took := h.allDelivered(o, 3*time.Minute, killed)
	dups := h.delivered(o, false)
	// docs/semantics.md: the sends in flight, plus those answered since
	// the last ledger write (every 20 ms; 50 ms allowed for the write).
	bound := inFlightMax + int(rate*0.05)
	t.Logf("after restart: every recipient delivered %v after the kill; %d duplicates (bound %d = %d in flight + %.0f/s x 50ms)",
		took.Round(time.Millisecond), dups, bound, inFlightMax, rate)
	if dups > bound {
		t.Errorf("%d duplicates, over the documented bound %d", dups, bound)
	}
	h.deadQueueEmpty()
	h.countersAddUp()
}

// rabbitmqctl runs rabbitmqctl, failing the test when it cannot.
func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestFaultBrokerRestartMidCampaign stops and starts the one RabbitMQ every
// test uses: it runs alone.
func TestFaultBrokerRestartMidCampaign(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Fatal("rabbitmqctl not found: this test restarts the local RabbitMQ (scripts/services.sh installs it)")
	}
	h := newHarness(t, sim.Config{Latency: 2 * time.Millisecond})
	d := h.start(nil)
	o := h.publish(synth.Options{Campaign: "broker-restart", Recipients: 20000, IOSPercent: 50}, dispatcher.Normal)
	h.waitAccepted(4000, 2*time.Minute)

	stopped := false
	t.Cleanup(func() {
		if stopped {
			_ = exec.Command("rabbitmqctl", "start_app").Run()
		}
	})
	down := time.Now()
	rabbitmqctl(t, "stop_app")
	stopped = true
	testwait.For(t, 30*time.Second, "pushd to see the broker gone", func() bool { return !ready(d) })
	t.Logf("stop_app at %d accepted; pushd not ready %v after stop_app began", accepted(h.sim), time.Since(down).Round(time.Millisecond))
	// The outage itself: the broker stays down for 2 s, so that pushd's
	// first reconnection attempts fail and it has to back off and retry.
	time.Sleep(2 * time.Second)
	rabbitmqctl(t, "start_app")
	stopped = false
	up := time.Now()
	testwait.For(t, time.Minute, "pushd to reconnect by itself", func() bool { return ready(d) })
	reconnected := time.Since(up)
	took := h.allDelivered(o, 3*time.Minute, up)
	dups := h.delivered(o, false)
	t.Logf("broker back: pushd ready again %v after start_app, every recipient delivered %v after it; %d duplicates",
		reconnected.Round(time.Millisecond), took.Round(time.Millisecond), dups)
	if dups > inFlightMax {
		t.Errorf("%d duplicates, more than the %d sends that can be in flight", dups, inFlightMax)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	h.ch = queuetest.Conn(t, h.url) // the old channel died with the broker
	h.lanesEmpty()
	h.deadQueueEmpty()
	h.countersAddUp()
}

// TestLinkResetAndSilenceThroughAProxy resets and freezes a proxy of its
// own. pushd runs as a process of its own too, so that its goroutine count
// (go_goroutines on /metrics) is not mixed with other tests' daemons.
func TestLinkResetAndSilenceThroughAProxy(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{Latency: 2 * time.Millisecond})
	h.withAdmin()
	const heartbeat = 4 * time.Second
	proxy, url := queuetest.ProxyURL(t, h.url)
	d := h.spawn(map[string]string{
		"PUSHD_AMQP_URL":                 url,
		"PUSHD_AMQP_HEARTBEAT":           heartbeat.String(),
		"PUSHD_DISPATCHER_CAMPAIGN_IDLE": "1s",
	})
	finished := func(id string) func() bool {
		return costly(func() bool { return h.campaign(d, id).Status == dispatcher.StatusFinished })
	}
	goroutines := func() int { return int(scrape(t, d.metrics)["go_goroutines"]) }

	// Baseline: one campaign through, finished and its queue deleted,
	// nothing in flight.
	warm := h.publish(synth.Options{Campaign: "link-warmup", Recipients: 2000, IOSPercent: 50}, dispatcher.Normal)
	h.allDelivered(warm, time.Minute, time.Now())
	testwait.For(t, 30*time.Second, "warm-up campaign finished", finished(warm.Campaign))
	testwait.For(t, 30*time.Second, "warm-up campaign queue deleted", costly(func() bool {
		return !queuetest.Exists(t, h.url, h.top.CampaignQueue(warm.Campaign))
	}))
	baseline := goroutines()

	o := h.publish(synth.Options{Campaign: "link-faults", Recipients: 20000, IOSPercent: 50}, dispatcher.Normal)
	start := time.Now()
	// Resets: the broker sees the connection die at once.
	for i, at := range []int{3000, 5000, 7000} {
		h.waitAccepted(warm.Recipients+at, 2*time.Minute)
		conns := proxy.Accepted()
		proxy.Reset()
		reset := time.Now()
		testwait.For(t, 30*time.Second, "reconnected after a reset", func() bool { return proxy.Accepted() > conns && ready(d) })
		t.Logf("reset %d at %d accepted: ready again after %v", i+1, accepted(h.sim)-warm.Recipients, time.Since(reset).Round(time.Millisecond))
	}
	// Silence: the link stays open but nothing comes through.
	h.waitAccepted(warm.Recipients+9000, 2*time.Minute)
	proxy.Freeze()
	frozen := time.Now()
	testwait.For(t, 30*time.Second, "silent link detected", func() bool { return !ready(d) })
	detected := time.Since(frozen)
	if detected > heartbeat {
		t.Errorf("silent link detected after %v, want within amqp.heartbeat (%v)", detected, heartbeat)
	}
	// A reconnection attempt meets the silence too.
	conns := proxy.Accepted()
	testwait.For(t, 30*time.Second, "a reconnection attempt through the frozen link", func() bool { return proxy.Accepted() > conns })
	proxy.Thaw()
	thawed := time.Now()
	testwait.For(t, 30*time.Second, "reconnected after the silence", func() bool { return ready(d) })
	t.Logf("silence at %d accepted: detected after %v (amqp.heartbeat %v); ready again %v after the link came back",
		9000, detected.Round(time.Millisecond), heartbeat, time.Since(thawed).Round(time.Millisecond))

	took := h.allDelivered(o, 3*time.Minute, start)
	dups := h.delivered(o, false)
	t.Logf("every recipient delivered in %v through 3 resets and a silence; %d duplicates", took.Round(time.Millisecond), dups)
	if dups > inFlightMax {
		t.Errorf("%d duplicates, more than the %d sends that can be in flight", dups, inFlightMax)
	}

	// No goroutine leak: once the campaign is finished, the count comes
	// back to the baseline (a leak per reconnection would show as 4+).
	testwait.For(t, 30*time.Second, "campaign finished", finished(o.Campaign))
	var now int
	settled := func() bool { now = goroutines(); return now <= baseline+3 }
	deadline := time.Now().Add(15 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("goroutines: %d before the faults, %d after", baseline, now)
	if now > baseline+3 {
		// SIGQUIT: the Go runtime writes every goroutine's stack to
		// stderr, which the test log shows, and exits.
		_ = d.cmd.Process.Signal(syscall.SIGQUIT)
		_ = d.stop()
		t.Fatalf("goroutines grew from %d to %d across 4 reconnections (stacks in the log above, with -v)", baseline, now)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	h.lanesEmpty()
	h.deadQueueEmpty()
	h.countersAddUp()
}

func TestProviderErrorsAreRetried(t *testing.T) {
	t.Parallel()
	mix := sim.ErrorMix{Unavailable: 0.20, TooMany: 0.05}
	h := newHarness(t, sim.Config{Latency: time.Millisecond, APNsErrors: mix, FCMErrors: mix, RetryAfter: time.Second})
	d := h.start(nil)
	start := time.Now()
	o := h.publish(synth.Options{Campaign: "provider-errors", Recipients: 10000, IOSPercent: 50}, dispatcher.Normal)
	took := h.allDelivered(o, 3*time.Minute, start)
	h.delivered(o, true) // a refused send is not a delivery: no duplicates

	st := h.sim.Stats()
	refused := (st.APNs.Requests - st.APNs.Accepted) + (st.FCM.Requests - st.FCM.Accepted)
	m := scrape(t, d.metrics)
	retries := m[`pushd_sends_total{provider="apns",result="retry"}`] + m[`pushd_sends_total{provider="fcm",result="retry"}`]
	holds := m[`pushd_amqp_published_total{kind="hold",result="ok"}`]
	t.Logf("10000 recipients delivered in %v; the simulator refused %d requests (%d with Retry-After), pushd counted %.0f retries in %.0f held batches; %d requests came before their Retry-After",
		took.Round(time.Millisecond), refused, st.APNs.RetryAfterSent+st.FCM.RetryAfterSent, retries, holds, st.RetryAfterIgnored)
	if refused < 2000 {
		t.Errorf("only %d refusals: the error mix did not apply", refused)
	}
	if int64(retries) != refused {
		t.Errorf("pushd counted %.0f retries, the simulator refused %d requests", retries, refused)
	}
	if holds == 0 {
		t.Error("no retry batch was held")
	}
	if st.RetryAfterIgnored != 0 {
		t.Errorf("%d requests came before the Retry-After the simulator asked for", st.RetryAfterIgnored)
	}
	h.deadQueueEmpty()
	h.countersAddUp()
}

// recoveryBound is how soon after a provider's outage every recipient
// held through it must be delivered: the breaker probes every second, and
// releases them all at its first success.
const recoveryBound = 3 * time.Second

// TestFaultProviderDownThirtySeconds stops its simulator for 30 s, then
// starts it again on the same port: it runs alone, so that no other test
// takes the port meanwhile.
func TestFaultProviderDownThirtySeconds(t *testing.T) {
	h := newHarness(t, sim.Config{Latency: time.Millisecond})
	d := h.start(nil)
	o := h.publish(synth.Options{Campaign: "provider-down", Recipients: 20000, IOSPercent: 50}, dispatcher.Normal)
	h.waitAccepted(3000, 2*time.Minute)
	rate := h.rateNow(1000)
	addr := h.sim.Addr()
	if err := h.sim.Stop(); err != nil {
		t.Fatal(err)
	}
	// Handlers past their latency when the connections closed still count
	// their push as accepted, though the answer is lost (as with a real
	// outage): pushd retries those, the duplicates below. The simulator
	// does not say when its last handler returned, so they are given
	// 200 ms (a hundred times their latency) before the count is taken.
	time.Sleep(200 * time.Millisecond)
	atStop := accepted(h.sim)
	t.Logf("simulator stopped at %d accepted, sending %.0f/s", atStop, rate)
	// The outage itself: 30 s with nothing listening.
	time.Sleep(30 * time.Second)
	if got := accepted(h.sim); got != atStop {
		t.Fatalf("accepted moved while stopped: %d -> %d", atStop, got)
	}
	if err := h.sim.Start(addr); err != nil {
		t.Fatalf("restart the simulator on %s: %v", addr, err)
	}
	up := time.Now()
	testwait.For(t, time.Minute, "first send after the outage", func() bool { return accepted(h.sim) > atStop })
	first := time.Since(up)
	took := h.allDelivered(o, 3*time.Minute, up)
	dups := h.delivered(o, false)
	m := scrape(t, d.metrics)
	retries := m[`pushd_sends_total{provider="apns",result="retry"}`] + m[`pushd_sends_total{provider="fcm",result="retry"}`]
	drain := time.Duration(float64(o.Recipients-atStop) / rate * float64(time.Second))
	t.Logf("provider back: first send %v after it, every recipient %v after it (the %d left take %v at the rate before); %.0f sends retried during the outage; %d duplicates",
		first.Round(time.Millisecond), took.Round(time.Millisecond), o.Recipients-atStop, drain.Round(time.Millisecond), retries, dups)
	// With the race detector pushd and the simulator, both in this
	// process, send two to four thousand a second, as the machine's load
	// allows, and the 16,000 recipients left take longer than the bound by
	// themselves: the bound then gives them twice the time they take at
	// the rate measured before the outage. Without it they take about a
	// second, and the bound is the bound.
	bound := recoveryBound
	if raceEnabled {
		bound += 2 * drain
	}
	if took > bound {
		t.Errorf("every recipient delivered %v after the provider came back, want within %v", took.Round(time.Millisecond), bound.Round(time.Millisecond))
	}
	if dups > inFlightMax {
		t.Errorf("%d duplicates, more than the %d sends that can be in flight", dups, inFlightMax)
	}
	for _, p := range []string{"apns", "fcm"} {
		if up := m[`pushd_provider_up{provider="`+p+`"}`]; up != 1 {
			t.Errorf("pushd_provider_up{provider=%q} %v after the recovery, want 1", p, up)
		}
		if n := m[`pushd_provider_breaker_opened_total{provider="`+p+`"}`]; n < 1 {
			t.Errorf("the %s breaker never opened during the outage", p)
		}
	}
	h.deadQueueEmpty()
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	h.lanesEmpty()
	h.countersAddUp()
}
