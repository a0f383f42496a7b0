package queue

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/dispatcher"
)

// PublishBatch publishes a pushd.batch/v1 body to lane the way any producer
// should (persistent, application/json, message_id = batchID, mandatory)
// and returns once the broker has confirmed it. Like the Broker's other
// publishes, it waits for a connection and retries on a new one when the
// current one fails; it gives up when ctx ends or the message is
// unroutable. It implements scheduler.Publisher: the scheduler is a
// producer like any outside one.
//
// A publish that fails after the broker took the message (the confirm is
// lost with the connection) is published again: the caller's message id
// and the dispatcher's dedup ledger make the copy harmless.
func (b *Broker) PublishBatch(ctx context.Context, lane dispatcher.Lane, batchID string, body []byte) error {
	_, key := b.cfg.Topology.lane(lane)
	msg := amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    batchID,
		Body:         body,
	}
	stamp(&msg, b.cfg.Now())
	return b.publish(ctx, "batch", b.cfg.Topology.Exchange, key, true, msg)
}
