package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/queue"
	"github.com/pushd/pushd/queue/queuetest"
)

// publishRange publishes the batches of o's recipients [from, to) in
// batches of size, pipelined, and waits for their confirms.
func (h *harness) publishRange(o synth.Options, from, to, size int) {
	h.t.Helper()
	p, err := queue.DialProducer(h.url, h.top)
	if err != nil {
		h.t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	for start := from; start < to; start += size {
		b := &dispatcher.Batch{
			Schema: dispatcher.Schema, BatchID: fmt.Sprintf("%s/r%06d", o.Campaign, start),
			Campaign:     dispatcher.Campaign{ID: o.Campaign, RatePerSecond: o.Rate},
			Notification: dispatcher.Notification{Title: "t", Body: "b"},
		}
		for i := start; i < min(start+size, to); i++ {
			b.Recipients = append(b.Recipients, o.Recipient(i))
		}
		body, _ := json.Marshal(b)
		if err := p.Publish(ctx, dispatcher.Normal, b.BatchID, body); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := p.Wait(ctx); err != nil {
		h.t.Fatal(err)
	}
}

// TestFaultPauseAnswersWhileRabbitMQIsStopped pauses a campaign while
// RabbitMQ is stopped and batches of the campaign were being routed to its
// queue: the admin API answers within a second, nothing of the campaign is
// sent after the answer (nor once the broker is back), and after a resume
// every recipient is delivered.
func TestFaultPauseAnswersWhileRabbitMQIsStopped(t *testing.T) {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Fatal("rabbitmqctl not found: this test stops the local RabbitMQ (scripts/services.sh installs it)")
	}
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	o := synth.Options{Campaign: "pause-outage", Recipients: 14000, IOSPercent: 50, Rate: 300}
	queuetest.DeleteAtEnd(t, h.url, h.top.CampaignQueue(o.Campaign))
	const first = 4000
	h.publishRange(o, 0, first, 1000)
	testwait.For(t, 30*time.Second, "sending started", func() bool { return h.sent(o) >= 300 })

	// A burst of small batches of the campaign: pushd routes them to the
	// campaign's queue one by one, each confirmed, for a few seconds, so
	// that a route is in progress when the broker goes away.
	h.publishRange(o, first, o.Recipients, 5)
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = exec.Command("rabbitmqctl", "start_app").Run()
		}
	})
	rabbitmqctl(t, "stop_app")
	routed := h.campaign(d, o.Campaign).Counters.Received
	t.Logf("RabbitMQ stopped with %d of %d recipients sent, %d received (the rest of the burst still in the lane)", h.sent(o), o.Recipients, routed)
	if routed >= int64(o.Recipients) {
		t.Errorf("the whole burst was taken in before the broker stopped: the test did not stop it mid-routing")
	}

	before := h.sent(o)
	asked := time.Now()
	answer := make(chan dispatcher.CampaignInfo, 1)
	go func() {
		var info dispatcher.CampaignInfo
		h.api(d, "POST", "/api/campaigns/"+o.Campaign+"/pause", operatorToken, nil, &info)
		answer <- info
	}()
	var info dispatcher.CampaignInfo
	select {
	case info = <-answer:
	case <-time.After(10 * time.Second):
		t.Fatal("pause did not answer within 10s with RabbitMQ stopped")
	}
	answered := time.Since(asked)
	atAnswer := h.sent(o)
	t.Logf("pause answered in %v while RabbitMQ is stopped (%d sent before, %d at the answer)", answered.Round(time.Millisecond), before, atAnswer)
	if answered > time.Second {
		t.Errorf("pause took %v to answer with RabbitMQ stopped, want within 1s", answered)
	}
	if info.Status != dispatcher.StatusPaused {
		t.Fatalf("status %s after pause", info.Status)
	}
	// Observe for a while: sends of the campaign that had started before
	// the answer may still reach the simulator within a moment; none may
	// start later.
	observeFor(t, 3*time.Second)
	settled := h.sent(o)
	if settled-atAnswer > inFlightMax {
		t.Errorf("%d sends after the pause answered", settled-atAnswer)
	}

	rabbitmqctl(t, "start_app")
	stopped = false
	testwait.For(t, time.Minute, "pushd to reconnect by itself", func() bool { return ready(d) })
	h.ch = queuetest.Conn(t, h.url) // the old channel died with the broker
	// Back with the broker, the campaign stays paused: its queue is not
	// consumed. Ten batches' worth of time at its rate passes unsent.
	observeFor(t, 3*time.Second)
	if got := h.sent(o); got != settled {
		t.Errorf("%d sends of the paused campaign after the broker came back", got-settled)
	}
	if st := h.campaign(d, o.Campaign).Status; st != dispatcher.StatusPaused {
		t.Errorf("status %s after the broker came back, want paused", st)
	}

	var rated dispatcher.CampaignInfo
	if code := h.api(d, "PUT", "/api/campaigns/"+o.Campaign+"/rate", operatorToken, map[string]any{"rate_per_second": 0}, &rated); code != 200 {
		t.Fatalf("PUT rate: %d", code)
	}
	h.control(d, o.Campaign, "resume")
	testwait.For(t, 2*time.Minute, "every recipient delivered", func() bool { return h.sent(o) == o.Recipients })
	dups := h.delivered(o, false)
	t.Logf("after the resume: %d of %d recipients delivered, %d duplicates", h.sent(o), o.Recipients, dups)
	if dups > inFlightMax {
		t.Errorf("%d duplicates, more than the %d sends that can be in flight", dups, inFlightMax)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	h.lanesEmpty()
	h.deadQueueEmpty()
	h.countersAddUp()
}
