package queue_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

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
	got := consumeCampaign(t, b.broker, campaign)
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

// TestPublishTimeIsCarriedToTheCampaignQueue: a producer's batch says when
// it was published (timestamp_in_ms, milliseconds); the lane delivery has
// it, and pushd's copy routed to the campaign's queue keeps it, for the
// enqueue-to-send latency. A message with only the AMQP timestamp has it
// to the second; one without either has none.
func TestPublishTimeIsCarriedToTheCampaignQueue(t *testing.T) {
	b := setup(t, "", queue.Config{})
	const campaign = "published-at"
	queuetest.DeleteAtEnd(t, queuetest.URL(t), b.top.CampaignQueue(campaign))
	ctx := context.Background()
	lanes := make(chan dispatcher.Delivery, 10)
	consume(t, b.broker, func(_ context.Context, d dispatcher.Delivery) { lanes <- d })
	testwait.For(t, waitLimit, "ready", b.broker.Ready)

	at := time.UnixMilli(1_900_000_000_123)
	queuetest.PublishWith(t, b.ch, b.top.Exchange, b.top.RoutingKey, amqp.Publishing{
		Body: []byte("ms"), Timestamp: at, Headers: amqp.Table{queue.HeaderTimestampMs: at.UnixMilli()},
	})
	queuetest.PublishWith(t, b.ch, b.top.Exchange, b.top.RoutingKey, amqp.Publishing{Body: []byte("s"), Timestamp: at})
	queuetest.PublishWith(t, b.ch, b.top.Exchange, b.top.RoutingKey, amqp.Publishing{Body: []byte("none")})
	want := map[string]time.Time{"ms": at, "s": at.Truncate(time.Second), "none": {}}
	var ms dispatcher.Delivery
	for range 3 {
		d := receive(t, lanes, "a lane delivery")
		if got := d.Hop.Published; !got.Equal(want[string(d.Body)]) {
			t.Errorf("%s: published %v, want %v", d.Body, got, want[string(d.Body)])
		}
		if string(d.Body) == "ms" {
			ms = d
		} else if err := d.Acker.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.broker.Route(ctx, campaign, ms.Body, ms.Hop); err != nil {
		t.Fatalf("route: %v", err)
	}
	if err := ms.Acker.Ack(); err != nil {
		t.Fatal(err)
	}
	got := consumeCampaign(t, b.broker, campaign)
	d := receive(t, got, "the routed copy")
	if !d.Republished || !d.Hop.Published.Equal(at) {
		t.Errorf("routed copy: republished %v, published %v, want %v", d.Republished, d.Hop.Published, at)
	}
	if err := d.Acker.Ack(); err != nil {
		t.Fatal(err)
	}
}

// consumeCampaign consumes campaign's queue until the test ends, and
// returns its deliveries.
func consumeCampaign(t *testing.T, broker *queue.Broker, campaign string) <-chan dispatcher.Delivery {
	t.Helper()
	got := make(chan dispatcher.Delivery, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		broker.ConsumeCampaign(ctx, campaign, func(_ context.Context, d dispatcher.Delivery) { got <- d })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return got
}
