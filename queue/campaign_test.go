package queue_test

import (
	"context"
	"testing"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/queue"
	"github.com/pushd/pushd/queue/queuetest"
)

// TestCampaignConsumerRefusedByTheBrokerLeavesTheLanesUp: a campaign
// queue whose Raft member is down (as while RabbitMQ deletes it, or
// declares it again) makes RabbitMQ 3.10 close the connection of whoever
// consumes it. The campaign consumer retries with backoff on the campaign
// link, the lanes' connection stays up and keeps delivering, and the
// campaign's message is delivered once the member is back.
func TestCampaignConsumerRefusedByTheBrokerLeavesTheLanesUp(t *testing.T) {
	b := setup(t, "", queue.Config{})
	url := queuetest.URL(t)
	const campaign = "raft-down"
	name := b.top.CampaignQueue(campaign)
	queuetest.DeleteAtEnd(t, url, name)
	ctx := context.Background()
	if err := b.broker.Route(ctx, campaign, []byte("held"), dispatcher.Hop{}); err != nil {
		t.Fatalf("route: %v", err)
	}

	lanes := make(chan dispatcher.Delivery, 10)
	consume(t, b.broker, func(_ context.Context, d dispatcher.Delivery) { lanes <- d })
	testwait.For(t, waitLimit, "ready", b.broker.Ready)
	connects := b.met.connects.Load()

	queuetest.StopRaftMember(t, url, name)
	got := make(chan dispatcher.Delivery, 10)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.broker.ConsumeCampaign(cctx, campaign, func(_ context.Context, d dispatcher.Delivery) { got <- d })
	}()
	t.Cleanup(func() { cancel(); <-done })
	testwait.For(t, waitLimit, "the broker to refuse the campaign consumer twice", func() bool { return b.met.consumeFails.Load() >= 2 })

	// Meanwhile the lanes' connection never dropped, and delivers.
	queuetest.Publish(t, b.ch, b.top.Exchange, b.top.RoutingKey, []byte("lane"))
	if d := receive(t, lanes, "a lane delivery while the campaign consumer is refused"); string(d.Body) != "lane" {
		t.Errorf("lane delivery %q", d.Body)
	} else if err := d.Acker.Ack(); err != nil {
		t.Errorf("ack on the lanes' connection: %v", err)
	}
	if n := b.met.connects.Load(); n != connects {
		t.Errorf("the lanes' connection was made %d times more", n-connects)
	}

	queuetest.StartRaftMember(t, url, name)
	d := receive(t, got, "the campaign's message once its Raft member is back")
	if string(d.Body) != "held" || !d.Republished {
		t.Errorf("campaign delivery %q (republished %v)", d.Body, d.Republished)
	}
	if err := d.Acker.Ack(); err != nil {
		t.Errorf("ack: %v", err)
	}
	t.Logf("refused %d times before the member came back", b.met.consumeFails.Load())
}
