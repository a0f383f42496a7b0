package queue_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/queue"
	"github.com/pushd/pushd/scheduler"
)

// The scheduler publishes through the Broker.
var _ scheduler.Publisher = (*queue.Broker)(nil)

func TestPublishBatchReachesItsLaneAsAProducersWould(t *testing.T) {
	b := setup(t, "", queue.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for _, tc := range []struct {
		lane  dispatcher.Lane
		queue string
		id    string
	}{
		{dispatcher.Normal, b.top.Queue, "spring-sale/0000000001"},
		{dispatcher.High, b.top.HighQueue, "spring-sale.test-1/1"},
	} {
		t.Run(tc.lane.String(), func(t *testing.T) {
			body := []byte(`{"batch_id":"` + tc.id + `"}`)
			before := time.Now().Add(-time.Second)
			if err := b.broker.PublishBatch(ctx, tc.lane, tc.id, body); err != nil {
				t.Fatal(err)
			}
			// Confirmed means queued: no waiting for it to appear.
			d, ok, err := b.ch.Get(tc.queue, true)
			if err != nil || !ok {
				t.Fatalf("get %s after a confirmed publish: ok=%v err=%v", tc.queue, ok, err)
			}
			if string(d.Body) != string(body) || d.MessageId != tc.id || d.ContentType != "application/json" ||
				d.DeliveryMode != amqp.Persistent || d.Timestamp.Before(before) {
				t.Errorf("got body %s, message_id %q, content type %q, delivery mode %d, timestamp %v",
					d.Body, d.MessageId, d.ContentType, d.DeliveryMode, d.Timestamp)
			}
		})
	}
}

func TestPublishBatchUnroutableFails(t *testing.T) {
	b := setup(t, "", queue.Config{})
	if err := b.ch.QueueUnbind(b.top.Queue, b.top.RoutingKey, b.top.Exchange, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := b.broker.PublishBatch(ctx, dispatcher.Normal, "c/0000000001", []byte("{}")); err == nil {
		t.Fatal("a batch nobody can receive was reported published")
	}
}
