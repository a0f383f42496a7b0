package queue

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/dispatcher"
)

// Each campaign has a queue of its own, fed from the lanes by the
// dispatcher and consumed with a small prefetch: a throttled or paused
// campaign holds only its own messages, never the lanes' prefetch.

// campaignPrefetch is the prefetch of a campaign queue's consumer: one batch
// being sent and the next one ready.
const campaignPrefetch = 2

var plainID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,120}$`)

// CampaignQueue returns the name of a campaign's queue:
// "<queue>.campaign.<id>", or with a hash of the id when the id has
// characters unsafe in a queue name or is long.
func (t Topology) CampaignQueue(id string) string {
	if plainID.MatchString(id) {
		return t.Queue + ".campaign." + id
	}
	h := sha256.Sum256([]byte(id))
	return t.Queue + ".campaign.h-" + hex.EncodeToString(h[:16])
}

func (t Topology) declareCampaignQueue(ch *amqp.Channel, id string) error {
	_, err := ch.QueueDeclare(t.CampaignQueue(id), true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-delivery-limit":       int64(t.DeliveryLimit),
		"x-dead-letter-exchange": t.DeadExchange,
		"x-dead-letter-strategy": "at-least-once",
		amqp.QueueOverflowArg:    amqp.QueueOverflowRejectPublish,
	})
	if err != nil {
		return fmt.Errorf("declare campaign queue %q: %w", t.CampaignQueue(id), err)
	}
	return nil
}

// withChannel runs f on a fresh channel of l's live session (errors close
// channels, so declarations and deletions get their own).
func (b *Broker) withChannel(ctx context.Context, l *link, f func(*amqp.Channel) error) error {
	s, err := l.wait(ctx)
	if err != nil {
		return fmt.Errorf("no broker connection: %w", err)
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer func() { _ = ch.Close() }()
	return f(ch)
}

// Route publishes a batch body to a campaign's queue, declaring the queue
// when it does not exist. It implements dispatcher.CampaignQueues.
func (b *Broker) Route(ctx context.Context, campaign string, body []byte, h dispatcher.Hop) error {
	headers := hopHeaders(h)
	b.seals.seal(headers, body)
	msg := amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Headers:      headers,
		Body:         body,
	}
	// A producer's batch routed on keeps the time the producer published
	// it, for the enqueue-to-send latency.
	stamp(&msg, cmp.Or(h.Published, b.cfg.Now()))
	name := b.cfg.Topology.CampaignQueue(campaign)
	err := b.publish(ctx, "route", "", name, true, msg)
	if !errors.Is(err, errReturned) {
		return err
	}
	// The queue does not exist (first batch of the campaign, or deleted
	// when the campaign finished): create it and publish again. The
	// declaration goes over the campaign link: while a queue of the same
	// name is still being deleted, RabbitMQ 3.10 refuses it with a
	// connection error (cluster_not_formed).
	if err := b.withChannel(ctx, b.camp, func(ch *amqp.Channel) error {
		return b.cfg.Topology.declareCampaignQueue(ch, campaign)
	}); err != nil {
		return err
	}
	return b.publish(ctx, "route", "", name, true, msg)
}

// ConsumeCampaign consumes a campaign's queue (declaring it) until ctx
// ends, on the campaign link, across reconnects: a consumer that fails is
// started again after a backoff. Deliveries that arrive after ctx ended
// are handed to h too, so that it can put them back without a redelivery.
// It implements dispatcher.CampaignQueues.
func (b *Broker) ConsumeCampaign(ctx context.Context, campaign string, h func(context.Context, dispatcher.Delivery)) {
	c := consumer{
		link:     b.camp,
		queue:    b.cfg.Topology.CampaignQueue(campaign),
		lane:     dispatcher.Normal,
		prefetch: campaignPrefetch,
		tag:      fmt.Sprintf("%s-campaign-%d", b.cfg.Name, b.pubSeq.Add(1)),
		declare:  func(ch *amqp.Channel) error { return b.cfg.Topology.declareCampaignQueue(ch, campaign) },
		handOver: true,
	}
	b.consumeLoop(ctx, c, h)
}

// DeleteCampaignQueue deletes a campaign's queue if it holds no message
// and has no consumer (no pushd instance is consuming it), and reports
// whether the queue is gone (deleted now or already absent). Quorum queues
// cannot delete "if empty" atomically, so the caller must stop routing to
// the queue first. It implements dispatcher.CampaignQueues.
func (b *Broker) DeleteCampaignQueue(ctx context.Context, campaign string) (bool, error) {
	name := b.cfg.Topology.CampaignQueue(campaign)
	var gone bool
	err := b.withChannel(ctx, b.camp, func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
			gone = true
			return nil
		}
		if err != nil || q.Messages > 0 || q.Consumers > 0 {
			return err
		}
		if _, err := ch.QueueDelete(name, false, false, false); err != nil {
			return err
		}
		gone = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("delete campaign queue %q: %w", name, err)
	}
	return gone, nil
}

// Instances returns the number of pushd instances consuming, as the
// consumers of the normal lane's queue. It implements
// dispatcher.CampaignQueues.
func (b *Broker) Instances(ctx context.Context) (int, error) {
	var n int
	err := b.withChannel(ctx, b.main, func(ch *amqp.Channel) error {
		q, err := ch.QueueDeclarePassive(b.cfg.Topology.Queue, true, false, false, false, nil)
		n = q.Consumers
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("inspect %q: %w", b.cfg.Topology.Queue, err)
	}
	return n, nil
}

// PublishEvents publishes several events with one routing key, pipelined:
// all are sent, then their confirms awaited; the ones not confirmed are
// sent again (on a new connection if need be) until ctx ends.
func (b *Broker) PublishEvents(ctx context.Context, key string, bodies [][]byte) error {
	pending := bodies
	for len(pending) > 0 {
		s, err := b.main.wait(ctx)
		if err != nil {
			b.met.Published("event", false)
			return fmt.Errorf("publish events: no broker connection: %w", err)
		}
		failed := s.publishMany(ctx, b.cfg.Topology.EventsExchange, key, pending, b.event)
		for range len(pending) - len(failed) {
			b.met.Published("event", true)
		}
		if len(failed) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			b.met.Published("event", false)
			return fmt.Errorf("publish events: %d not confirmed: %w", len(failed), ctx.Err())
		}
		pending = failed
		select {
		case <-s.closed:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return nil
}

// event builds the publishing of an event body.
func (b *Broker) event(key string, body []byte) amqp.Publishing {
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    b.cfg.Now(),
		Type:         key,
		Body:         body,
	}
}

// publishMany publishes bodies without waiting in between, then waits for
// their confirms; it returns the bodies not confirmed.
func (s *session) publishMany(ctx context.Context, exchange, key string, bodies [][]byte, msg func(string, []byte) amqp.Publishing) (failed [][]byte) {
	dcs := make([]*amqp.DeferredConfirmation, len(bodies))
	for i, body := range bodies {
		s.pubMu.Lock()
		var err error
		if s.pub.IsClosed() {
			err = s.openPublisher()
		}
		if err == nil {
			dcs[i], err = s.pub.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg(key, body))
		}
		s.pubMu.Unlock()
		if err != nil {
			failed = append(failed, bodies[i:]...)
			dcs = dcs[:i]
			break
		}
	}
	for i, dc := range dcs {
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			failed = append(failed, bodies[i])
		}
	}
	return failed
}

// PublishEvent publishes an event (token.invalid, campaign.finished) to the
// events exchange with the given routing key, persistent and confirmed. It
// is not mandatory: events nobody subscribed to are dropped by the broker.
func (b *Broker) PublishEvent(ctx context.Context, key string, body []byte) error {
	return b.publish(ctx, "event", b.cfg.Topology.EventsExchange, key, false, b.event(key, body))
}
