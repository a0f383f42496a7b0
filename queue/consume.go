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

// A handler, the h of Consume and ConsumeCampaign, processes one delivery.
// It must resolve the delivery eventually (its Acker's Ack or Requeue)
// unless the Acker's Lost channel closes first.
type handler = func(ctx context.Context, d dispatcher.Delivery)

// consumer describes one queue to consume.
type consumer struct {
	// link is the connection it consumes on.
	link     *link
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
// handed out on it is acked or requeued. It returns once both lanes'
// consumers have returned. It implements dispatcher.Lanes.
func (b *Broker) Consume(ctx context.Context, h func(context.Context, dispatcher.Delivery)) {
	var wg sync.WaitGroup
	for _, lane := range []dispatcher.Lane{dispatcher.High, dispatcher.Normal} {
		q, _ := b.cfg.Topology.lane(lane)
		prefetch := b.cfg.Prefetch
		if lane == dispatcher.High {
			prefetch = b.cfg.HighPrefetch
		}
		c := consumer{link: b.main, queue: q, lane: lane, prefetch: prefetch, tag: fmt.Sprintf("%s-%s", b.cfg.Name, lane), isLane: true}
		wg.Go(func() { b.consumeLoop(ctx, c, h) })
	}
	wg.Wait()
}

// consumeLoop consumes one queue until ctx ends, on its link's live
// session, each attempt on a channel of its own. A consumer that fails to
// start, or stops unasked, is started again after a backoff
// (amqp.reconnect_min doubling to amqp.reconnect_max, with jitter; back
// to the minimum once a consumer has started): on the same connection if
// only its channel failed, else on the next one. A campaign queue's
// consumer that RabbitMQ refuses while the queue's Raft member is down
// thus retries at a falling pace instead of at once, and, on the campaign
// link, never takes the lanes' connection down with it.
func (b *Broker) consumeLoop(ctx context.Context, c consumer, h handler) {
	retry := backoff{min: b.cfg.ReconnectMin, max: b.cfg.ReconnectMax}
	kind := "campaign"
	if c.isLane {
		kind = "lane"
	}
	for {
		s, err := c.link.wait(ctx)
		if err != nil {
			return
		}
		started, err := b.consumeOnce(ctx, s, c, h)
		if ctx.Err() != nil {
			return
		}
		if started {
			retry.reset()
		}
		b.met.ConsumeFailed(kind)
		wait := retry.next()
		b.log.Warn("consumer stopped; restarting", "queue", c.queue, "err", err, "retry_in", wait.Round(time.Millisecond))
		if !b.sleep(ctx, wait) {
			return
		}
	}
}

// consume consumes c's queue on a new channel of s until ctx ends or the
// channel fails. started reports whether the broker took the consumer.
func (b *Broker) consume(ctx context.Context, s *session, c consumer, h handler) (started bool, err error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel: %w", err)
	}
	if c.declare != nil {
		if err := c.declare(ch); err != nil {
			_ = ch.Close()
			return false, err
		}
	}
	if err := ch.Qos(c.prefetch, 0, false); err != nil {
		_ = ch.Close()
		return false, fmt.Errorf("set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(c.queue, c.tag, false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return false, fmt.Errorf("consume %q: %w", c.queue, err)
	}
	t := &channelTracker{ch: ch, unresolved: map[*Acker]struct{}{}, handled: make(chan struct{})}
	notify := ch.NotifyClose(make(chan *amqp.Error, 1))
	b.watchers.Go(func() {
		<-notify
		t.handleClose()
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
				return true, errors.New("channel or consumer closed")
			}
			b.handle(ctx, h, t.deliver(d), c.lane)
		case <-ctx.Done():
		}
	}
	// Stop taking work; hand back what arrived but was not handed over.
	// The channel stays open until the deliveries in flight are resolved.
	if err := ch.Cancel(c.tag, false); err != nil {
		return true, nil // channel gone: the broker requeues its deliveries
	}
	for d := range deliveries {
		if c.handOver {
			b.handle(ctx, h, t.deliver(d), c.lane)
		} else {
			_ = d.Nack(false, true)
		}
	}
	t.stop()
	return true, nil
}

// handle calls h for the message a resolves. A panic in h is a poison
// message's doing, or a bug: it is logged and counted, and the message is
// requeued unless h resolved it. Each requeue raises the message's
// delivery count, so after x-delivery-limit deliveries the broker
// dead-letters it instead of handing it out forever; the rest of the
// queue keeps flowing meanwhile.
func (b *Broker) handle(ctx context.Context, h handler, a *Acker, lane dispatcher.Lane) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		b.met.HandlerPanicked()
		b.log.Error("handling a message panicked; requeueing it (dead-lettered after the delivery limit)",
			"message_id", a.d.MessageId, "delivery_count", a.d.Headers["x-delivery-count"], "panic", v, "stack", string(debug.Stack()))
		if !a.resolved.Load() {
			_ = a.Requeue()
		}
	}()
	h(ctx, b.delivery(a.d, lane, a))
}

// delivery returns what the dispatcher sees of a consumed message: its
// body and properties, the hop in pushd's headers when their seal holds,
// and a to resolve it.
func (b *Broker) delivery(d amqp.Delivery, lane dispatcher.Lane, a *Acker) dispatcher.Delivery {
	t := b.seals.open(d.Headers, d.Body, b.cfg.Now())
	return dispatcher.Delivery{
		Body:        d.Body,
		Lane:        lane,
		MessageID:   d.MessageId,
		Republished: t.republished,
		Hop:         dispatcher.Hop{Attempt: int(t.attempt), Key: t.key, Published: publishedAt(d)},
		HoldUntil:   t.holdUntil,
		Acker:       a,
	}
}

// channelTracker tracks the deliveries handed out on one consumer's
// channel. It closes the channel once the consumer is cancelled and every
// delivery is acked or requeued, so channels of stopped consumers do not
// pile up on the connection; and when the channel closes, by its doing or
// not, it reports lost every delivery not yet resolved.
type channelTracker struct {
	ch        *amqp.Channel
	closeOnce sync.Once
	// handled is closed once the channel's close is handled: every
	// delivery that is lost reports it by then (tests wait on it).
	handled chan struct{}

	// mu is held across each ack and requeue, so that the channel's close
	// is handled either before one (which then fails) or after it (which
	// then resolved the delivery), never in between.
	mu sync.Mutex
	// unresolved holds the deliveries handed out and not successfully
	// acked or requeued: the ones the broker will deliver again if the
	// channel closes.
	unresolved map[*Acker]struct{}
	// outstanding counts the deliveries handed out on which neither Ack
	// nor Requeue was called yet.
	outstanding int
	// stopped is set once the consumer is cancelled.
	stopped bool
	// closed is set once the channel is closed.
	closed bool
}

func (t *channelTracker) deliver(d amqp.Delivery) *Acker {
	del := &Acker{d: d, t: t, lost: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.outstanding++
	if t.closed {
		// Read from the consumer's buffer after the channel closed.
		close(del.lost)
		return del
	}
	t.unresolved[del] = struct{}{}
	return del
}

// resolve runs settle (an ack or a requeue of d) and records its outcome.
func (t *channelTracker) resolve(d *Acker, settle func() error) error {
	t.mu.Lock()
	err := settle()
	if err == nil {
		delete(t.unresolved, d)
	}
	last := false
	if d.resolved.CompareAndSwap(false, true) {
		t.outstanding--
		last = t.outstanding == 0 && t.stopped
	}
	t.mu.Unlock()
	if last {
		t.close()
	}
	return err
}

func (t *channelTracker) stop() {
	t.mu.Lock()
	t.stopped = true
	last := t.outstanding == 0
	t.mu.Unlock()
	if last {
		t.close()
	}
}

func (t *channelTracker) close() {
	t.closeOnce.Do(func() { _ = t.ch.Close() })
}

// handleClose handles the channel's close, whoever closed it: the
// deliveries not resolved are lost, the broker delivers them again.
func (t *channelTracker) handleClose() {
	t.mu.Lock()
	t.closed = true
	for d := range t.unresolved {
		close(d.lost)
		delete(t.unresolved, d)
	}
	t.mu.Unlock()
	close(t.handled)
}

// Acker resolves one consumed message on the channel it came from. It
// implements dispatcher.Acker.
type Acker struct {
	d        amqp.Delivery
	t        *channelTracker
	lost     chan struct{}
	resolved atomic.Bool // Ack or Requeue was called
}

// hopHeaders returns the headers that carry h.
func hopHeaders(h dispatcher.Hop) amqp.Table {
	t := amqp.Table{HeaderAttempt: int32(h.Attempt)}
	if h.Key != "" {
		t[HeaderKey] = h.Key
	}
	return t
}

// Ack acknowledges the message on the channel it came from; after that
// channel is gone it fails and the broker redelivers instead.
func (a *Acker) Ack() error { return a.t.resolve(a, func() error { return a.d.Ack(false) }) }

// Requeue returns the message to its queue.
func (a *Acker) Requeue() error {
	return a.t.resolve(a, func() error { return a.d.Nack(false, true) })
}

// Lost is closed when the message can no longer be acked or requeued and
// the broker will deliver it again: its channel or connection closed
// before an Ack or Requeue of it succeeded. It is never closed for a
// message acked or requeued successfully, even when its channel is closed
// afterwards (as it is on purpose once a stopped consumer's deliveries are
// all resolved).
func (a *Acker) Lost() <-chan struct{} { return a.lost }

// publishedAt is when a message was published: its timestamp_in_ms
// header, else its AMQP timestamp (whole seconds), else zero.
func publishedAt(d amqp.Delivery) time.Time {
	if ms, ok := intHeader(d.Headers[HeaderTimestampMs]); ok && ms > 0 {
		return time.UnixMilli(ms)
	}
	return d.Timestamp
}

// stamp sets a publishing's timestamp to at, in both forms.
func stamp(msg *amqp.Publishing, at time.Time) {
	msg.Timestamp = at
	if msg.Headers == nil {
		msg.Headers = amqp.Table{}
	}
	msg.Headers[HeaderTimestampMs] = at.UnixMilli()
}

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
