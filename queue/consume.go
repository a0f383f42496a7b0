package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/dispatcher"
)

// Handler processes one delivery. It must resolve the delivery eventually
// (Ack, Requeue) unless the delivery's Lost channel closes first.
type Handler func(ctx context.Context, d *Delivery)

// consumer describes one queue to consume.
type consumer struct {
	queue    string
	lane     dispatcher.Lane
	prefetch int
	tag      string
	// lane marks the lane consumers, whose state readiness reports.
	isLane bool
	// declare, when set, declares the queue before each consume (campaign
	// queues come and go).
	declare func(*amqp.Channel) error
	// handOver, when set, receives the deliveries that arrived after the
	// consumer was cancelled, instead of them being nacked: a campaign
	// queue's handler republishes them, so that pausing a campaign does
	// not count towards the delivery limit.
	handOver bool
}

// Consume consumes both lanes until ctx ends, on whatever connection is
// live, resuming after reconnects. Each lane has its own channel and
// prefetch and is handled by its own goroutine, so a busy normal lane never
// delays the high lane. When ctx ends it cancels the consumers and requeues
// deliveries not yet handed to h; a channel stays open until every delivery
// handed out on it is acked or requeued.
func (b *Broker) Consume(ctx context.Context, h Handler) error {
	var wg sync.WaitGroup
	for _, lane := range []dispatcher.Lane{dispatcher.High, dispatcher.Normal} {
		q, _ := b.cfg.Topology.lane(lane)
		prefetch := b.cfg.Prefetch
		if lane == dispatcher.High {
			prefetch = b.cfg.HighPrefetch
		}
		c := consumer{queue: q, lane: lane, prefetch: prefetch, tag: fmt.Sprintf("%s-%s", b.cfg.Name, lane), isLane: true}
		wg.Go(func() { b.consumeLoop(ctx, c, h) })
	}
	wg.Wait()
	return nil
}

// consumeLoop consumes one queue on each session in turn until ctx ends.
func (b *Broker) consumeLoop(ctx context.Context, c consumer, h Handler) {
	for {
		s, err := b.waitSession(ctx)
		if err != nil {
			return
		}
		err = b.consume(ctx, s, c, h)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("consumer stopped; restarting", "queue", c.queue, "err", err)
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

func (b *Broker) consume(ctx context.Context, s *session, c consumer, h Handler) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if c.declare != nil {
		if err := c.declare(ch); err != nil {
			_ = ch.Close()
			return err
		}
	}
	if err := ch.Qos(c.prefetch, 0, false); err != nil {
		_ = ch.Close()
		return fmt.Errorf("set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(c.queue, c.tag, false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return fmt.Errorf("consume %q: %w", c.queue, err)
	}
	t := &channelTracker{ch: ch, lost: make(chan struct{})}
	notify := ch.NotifyClose(make(chan *amqp.Error, 1))
	b.watchers.Go(func() {
		<-notify
		close(t.lost)
	})
	if c.isLane {
		b.consuming[c.lane].Store(true)
		b.met.Consuming(c.lane, true)
		defer func() {
			b.consuming[c.lane].Store(false)
			b.met.Consuming(c.lane, false)
		}()
	}
	b.log.Debug("consuming", "queue", c.queue, "prefetch", c.prefetch)
	for ctx.Err() == nil {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("channel or consumer closed")
			}
			b.handle(ctx, h, t.deliver(d, c.lane))
		case <-ctx.Done():
		}
	}
	// Stop taking work; hand back what arrived but was not handed over.
	// The channel stays open until the deliveries in flight are resolved.
	if err := ch.Cancel(c.tag, false); err != nil {
		return nil // channel gone: the broker requeues its deliveries
	}
	for d := range deliveries {
		if c.handOver {
			b.handle(ctx, h, t.deliver(d, c.lane))
		} else {
			_ = d.Nack(false, true)
		}
	}
	t.stop()
	return nil
}

// handle calls h for d. A panic in h is a poison message's doing, or a
// bug: it is logged and counted, and d is requeued unless h resolved it.
// Each requeue raises the message's delivery count, so after
// x-delivery-limit deliveries the broker dead-letters it instead of
// handing it out forever; the rest of the queue keeps flowing meanwhile.
func (b *Broker) handle(ctx context.Context, h func(context.Context, *Delivery), d *Delivery) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		b.met.HandlerPanicked()
		b.log.Error("handling a message panicked; requeueing it (dead-lettered after the delivery limit)",
			"message_id", d.MessageID(), "delivery_count", d.d.Headers["x-delivery-count"], "panic", v, "stack", string(debug.Stack()))
		if !d.resolved.Load() {
			_ = d.Requeue()
		}
	}()
	h(ctx, d)
}

// channelTracker closes a consumer's channel once the consumer is cancelled
// and every delivery handed out on it is resolved, so channels of stopped
// consumers do not pile up on the connection.
type channelTracker struct {
	ch          *amqp.Channel
	lost        chan struct{}
	outstanding atomic.Int64
	stopped     atomic.Bool
	closeOnce   sync.Once
}

func (t *channelTracker) deliver(d amqp.Delivery, lane dispatcher.Lane) *Delivery {
	t.outstanding.Add(1)
	return &Delivery{d: d, lane: lane, t: t}
}

func (t *channelTracker) resolved() {
	if t.outstanding.Add(-1) == 0 && t.stopped.Load() {
		t.close()
	}
}

func (t *channelTracker) stop() {
	t.stopped.Store(true)
	if t.outstanding.Load() == 0 {
		t.close()
	}
}

func (t *channelTracker) close() {
	t.closeOnce.Do(func() { _ = t.ch.Close() })
}

// Delivery is one consumed message. It implements dispatcher.Delivery.
type Delivery struct {
	d        amqp.Delivery
	lane     dispatcher.Lane
	t        *channelTracker
	resolved atomic.Bool
}

// Body returns the message body.
func (d *Delivery) Body() []byte { return d.d.Body }

// Lane returns the lane the message came from (campaign queues count as
// the normal lane).
func (d *Delivery) Lane() dispatcher.Lane { return d.lane }

// Attempt returns the x-pushd-attempt header, 0 when absent.
func (d *Delivery) Attempt() int {
	n, _ := intHeader(d.d.Headers[HeaderAttempt])
	return int(n)
}

// Key returns the x-pushd-key header, empty when absent.
func (d *Delivery) Key() string {
	k, _ := d.d.Headers[HeaderKey].(string)
	return k
}

// hopHeaders returns the headers that carry h.
func hopHeaders(h dispatcher.Hop) amqp.Table {
	t := amqp.Table{HeaderAttempt: int32(h.Attempt)}
	if h.Key != "" {
		t[HeaderKey] = h.Key
	}
	return t
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
func (d *Delivery) Ack() error { return d.resolve(d.d.Ack(false)) }

// Requeue returns the delivery to its queue.
func (d *Delivery) Requeue() error { return d.resolve(d.d.Nack(false, true)) }

func (d *Delivery) resolve(err error) error {
	if d.resolved.CompareAndSwap(false, true) {
		d.t.resolved()
	}
	return err
}

// Lost is closed when the delivery's channel is closed.
func (d *Delivery) Lost() <-chan struct{} { return d.t.lost }

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
