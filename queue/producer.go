package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/dispatcher"
)

// Producer publishes batches the way any producer should: persistent,
// application/json, message_id = batch id, with publisher confirms. It is
// what pushctl, the benchmark tool and tests use; it does not reconnect.
type Producer struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	top     Topology
	pending []*amqp.DeferredConfirmation
	returns chan amqp.Return
	window  int
}

// DialProducer connects to url, declares the topology (idempotently) and
// opens a confirm-mode channel.
func DialProducer(url string, top Topology) (*Producer, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second), Properties: amqp.Table{"connection_name": "pushd-producer"}})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", redactURL(url), err)
	}
	if err := top.Declare(conn, func(string, ...any) {}); err != nil {
		_ = conn.Close()
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = conn.Close()
		return nil, err
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 1024))
	return &Producer{conn: conn, ch: ch, top: top, returns: returns, window: 256}, nil
}

// Publish sends body to the lane with message id batchID. Up to 256
// publishes are in flight before it waits for confirms; call Wait at the
// end. Messages are mandatory: one the broker cannot route makes Wait fail.
func (p *Producer) Publish(ctx context.Context, lane dispatcher.Lane, batchID string, body []byte) error {
	_, key := p.top.lane(lane)
	msg := amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    batchID,
		Body:         body,
	}
	stamp(&msg, time.Now())
	return p.PublishRaw(ctx, key, msg)
}

// PublishRaw sends msg to the batch exchange with routing key; for tests
// that need odd messages.
func (p *Producer) PublishRaw(ctx context.Context, key string, msg amqp.Publishing) error {
	if len(p.pending) >= p.window {
		if err := p.Wait(ctx); err != nil {
			return err
		}
	}
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.top.Exchange, key, true, false, msg)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	p.pending = append(p.pending, dc)
	return nil
}

// Wait waits for the confirms of everything published so far.
func (p *Producer) Wait(ctx context.Context) error {
	defer func() { p.pending = p.pending[:0] }()
	for _, dc := range p.pending {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("broker refused a message (nack)")
		}
	}
	// Returns arrive before the confirms of their messages.
	select {
	case r := <-p.returns:
		return fmt.Errorf("message %q unroutable: %s", r.MessageId, r.ReplyText)
	default:
		return nil
	}
}

// Close closes the connection.
func (p *Producer) Close() error { return p.conn.Close() }
