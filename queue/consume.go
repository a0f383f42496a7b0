package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/dispatcher"
)

// Handler processes one delivery. It must resolve the delivery eventually
// (Ack, Requeue) unless the delivery's Lost channel closes first.
type Handler func(ctx context.Context, d *Delivery)

// Consume consumes both lanes until ctx ends, on whatever connection is
// live, resuming after reconnects. Each lane has its own channel and
// prefetch and is handled by its own goroutine, so a busy normal lane never
// delays the high lane. When ctx ends it cancels the consumers and requeues
// deliveries not yet handed to h; channels stay open so that deliveries in
// flight can still be acked, until Run closes the connection.
func (b *Broker) Consume(ctx context.Context, h Handler) error {
	var wg sync.WaitGroup
	for _, lane := range []dispatcher.Lane{dispatcher.High, dispatcher.Normal} {
		wg.Go(func() { b.consumeLoop(ctx, lane, h) })
	}
	wg.Wait()
	return nil
}

// consumeLoop consumes one lane on each session in turn until ctx ends.
func (b *Broker) consumeLoop(ctx context.Context, lane dispatcher.Lane, h Handler) {
	for {
		s, err := b.waitSession(ctx)
		if err != nil {
			return
		}
		err = b.consumeLane(ctx, s, lane, h)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("consumer stopped; restarting", "lane", lane, "err", err)
		// Wait for a new connection, or retry on this one if only the
		// channel failed.
		select {
		case <-s.closed:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return
		}
	}
}

func (b *Broker) consumeLane(ctx context.Context, s *session, lane dispatcher.Lane, h Handler) error {
	queue, _ := b.cfg.Topology.lane(lane)
	prefetch := b.cfg.Prefetch
	if lane == dispatcher.High {
		prefetch = b.cfg.HighPrefetch
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		_ = ch.Close()
		return fmt.Errorf("set prefetch: %w", err)
	}
	tag := fmt.Sprintf("%s-%s", b.cfg.Name, lane)
	deliveries, err := ch.Consume(queue, tag, false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return fmt.Errorf("consume %q: %w", queue, err)
	}
	lost := make(chan struct{})
	notify := ch.NotifyClose(make(chan *amqp.Error, 1))
	b.watchers.Go(func() {
		<-notify
		close(lost)
	})
	b.consuming[lane].Store(true)
	b.met.Consuming(lane, true)
	defer func() {
		b.consuming[lane].Store(false)
		b.met.Consuming(lane, false)
	}()
	b.log.Info("consuming", "queue", queue, "lane", lane, "prefetch", prefetch)
	for ctx.Err() == nil {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("channel closed")
			}
			h(ctx, newDelivery(d, lane, lost))
		case <-ctx.Done():
		}
	}
	// Stop taking work; hand back what arrived but was not handed over. The
	// channel stays open for in-flight acks until the connection closes.
	if err := ch.Cancel(tag, false); err != nil {
		return nil // channel gone: the broker requeues its deliveries
	}
	for d := range deliveries {
		_ = d.Nack(false, true)
	}
	return nil
}

// Delivery is one consumed message. It implements dispatcher.Delivery.
type Delivery struct {
	d    amqp.Delivery
	lane dispatcher.Lane
	lost <-chan struct{}
}

func newDelivery(d amqp.Delivery, lane dispatcher.Lane, lost <-chan struct{}) *Delivery {
	return &Delivery{d: d, lane: lane, lost: lost}
}

// Body returns the message body.
func (d *Delivery) Body() []byte { return d.d.Body }

// Lane returns the lane the message came from.
func (d *Delivery) Lane() dispatcher.Lane { return d.lane }

// Attempt returns the x-pushd-attempt header, 0 when absent.
func (d *Delivery) Attempt() int {
	n, _ := intHeader(d.d.Headers[HeaderAttempt])
	return int(n)
}

// HoldUntil returns the x-pushd-hold-until header as a time, zero when
// absent.
func (d *Delivery) HoldUntil() time.Time {
	ms, ok := intHeader(d.d.Headers[HeaderHoldUntil])
	if !ok || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// Republished reports whether pushd published this message itself.
func (d *Delivery) Republished() bool {
	_, ok := d.d.Headers[HeaderAttempt]
	return ok
}

// MessageID returns the AMQP message id (the producer's batch id).
func (d *Delivery) MessageID() string { return d.d.MessageId }

// Ack acknowledges the delivery on the channel it came from; after that
// channel is gone it fails and the broker redelivers instead.
func (d *Delivery) Ack() error { return d.d.Ack(false) }

// Requeue returns the delivery to its queue.
func (d *Delivery) Requeue() error { return d.d.Nack(false, true) }

// Lost is closed when the delivery's channel is closed.
func (d *Delivery) Lost() <-chan struct{} { return d.lost }

func intHeader(v any) (int64, bool) {
	switch n := v.(type) {
	case int8:
		return int64(n), true
	case int16:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	}
	return 0, false
}
