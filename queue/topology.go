// Package queue adapts RabbitMQ (AMQP 0-9-1) to the dispatcher: it declares
// pushd's topology, keeps one connection alive with reconnects, consumes the
// two batch lanes with manual acks and bounded prefetch, and publishes with
// publisher confirms (dead letters, delayed batches, events).
//
// It knows exchanges, queues and headers; it does not decode batches or make
// delivery decisions, which belong to the dispatcher.
package queue

import (
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/dispatcher"
)

// Topology names the exchanges and queues of the AMQP contract (DESIGN.md,
// "AMQP contract (v1)"). The zero value is not usable; start from
// DefaultTopology.
type Topology struct {
	// Exchange is the direct exchange producers publish batches to.
	Exchange string
	// RoutingKey and HighRoutingKey select the normal and high lane.
	RoutingKey     string
	HighRoutingKey string
	// Queue and HighQueue are the quorum queues of the two lanes.
	Queue     string
	HighQueue string
	// DeadExchange and DeadQueue receive what cannot be processed.
	DeadExchange string
	DeadQueue    string
	// EventsExchange is the topic exchange for token.invalid and
	// campaign.finished events.
	EventsExchange string
	// DeliveryLimit is the quorum queues' x-delivery-limit: a message
	// redelivered more often (say, because it crashes pushd) is
	// dead-lettered instead of looping.
	DeliveryLimit int
}

// DefaultTopology returns the names of DESIGN.md.
func DefaultTopology() Topology {
	return Topology{
		Exchange:       "pushd",
		RoutingKey:     "batch",
		HighRoutingKey: "batch.high",
		Queue:          "pushd.batches",
		HighQueue:      "pushd.batches.high",
		DeadExchange:   "pushd.dlx",
		DeadQueue:      "pushd.dead",
		EventsExchange: "pushd.events",
		DeliveryLimit:  10,
	}
}

// WithPrefix returns t with every exchange and queue name prefixed by p (the
// routing keys stay): a topology of its own for a test or a benchmark on a
// shared broker.
func (t Topology) WithPrefix(p string) Topology {
	t.Exchange = p + t.Exchange
	t.Queue = p + t.Queue
	t.HighQueue = p + t.HighQueue
	t.DeadExchange = p + t.DeadExchange
	t.DeadQueue = p + t.DeadQueue
	t.EventsExchange = p + t.EventsExchange
	return t
}

// Validate reports the first missing name.
func (t Topology) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"exchange", t.Exchange}, {"routing_key", t.RoutingKey}, {"high_routing_key", t.HighRoutingKey},
		{"queue", t.Queue}, {"high_queue", t.HighQueue}, {"dead_exchange", t.DeadExchange},
		{"dead_queue", t.DeadQueue}, {"events_exchange", t.EventsExchange},
	} {
		if f.v == "" {
			return fmt.Errorf("%s: must not be empty", f.name)
		}
	}
	if t.RoutingKey == t.HighRoutingKey {
		return errors.New("routing_key and high_routing_key must differ")
	}
	if t.Queue == t.HighQueue {
		return errors.New("queue and high_queue must differ")
	}
	if t.DeliveryLimit < 1 {
		return errors.New("delivery_limit: must be at least 1")
	}
	return nil
}

// Queues lists every queue the topology declares, delay queues included.
func (t Topology) Queues() []string {
	qs := []string{t.Queue, t.HighQueue, t.DeadQueue}
	for _, q := range []string{t.Queue, t.HighQueue} {
		for lvl := range delayLevels {
			qs = append(qs, delayQueue(q, lvl))
		}
	}
	return qs
}

// Exchanges lists the exchanges the topology declares.
func (t Topology) Exchanges() []string {
	return []string{t.Exchange, t.DeadExchange, t.EventsExchange}
}

// delayLevels are the hold times of the delay queues. A message held for d
// goes to the longest level not above d and, when it comes back early,
// through shorter ones: at most len(delayLevels) hops, each exact to the
// broker's TTL precision. Longer holds cycle through the last level.
var delayLevels = func() []time.Duration {
	levels := make([]time.Duration, 13) // 1s .. 4096s (68 min)
	for i := range levels {
		levels[i] = time.Second << i
	}
	return levels
}()

// delayLevel returns the index of the longest level not above d, or -1 when d
// is shorter than the shortest level.
func delayLevel(d time.Duration) int {
	lvl := -1
	for i, l := range delayLevels {
		if l <= d {
			lvl = i
		}
	}
	return lvl
}

// delayQueue names the delay queue of a lane queue at a level.
func delayQueue(laneQueue string, level int) string {
	return fmt.Sprintf("%s.delay.%ds", laneQueue, int(delayLevels[level]/time.Second))
}

// laneQueue returns the queue and routing key of a lane.
func (t Topology) lane(l dispatcher.Lane) (queue, key string) {
	if l == dispatcher.High {
		return t.HighQueue, t.HighRoutingKey
	}
	return t.Queue, t.RoutingKey
}

// ErrIncompatible is wrapped by Declare when something already exists on the
// broker with settings pushd cannot work with.
var ErrIncompatible = errors.New("incompatible topology")

// Declare creates the topology idempotently on conn. Where an object already
// exists with other arguments (a producer declared it first), it checks that
// it exists and uses it, reporting the difference through warn.
func (t Topology) Declare(conn *amqp.Connection, warn func(msg string, args ...any)) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer func() { _ = ch.Close() }()

	// reopen replaces ch after the broker closed it with a channel error.
	reopen := func() error {
		ch, err = conn.Channel()
		if err != nil {
			return fmt.Errorf("reopen channel: %w", err)
		}
		return nil
	}
	exchange := func(name, kind string) error {
		err := ch.ExchangeDeclare(name, kind, true, false, false, false, nil)
		if !isPrecondition(err) {
			if err != nil {
				return fmt.Errorf("declare exchange %q: %w", name, err)
			}
			return nil
		}
		if err := reopen(); err != nil {
			return err
		}
		if err := ch.ExchangeDeclarePassive(name, kind, true, false, false, false, nil); err != nil {
			if isPrecondition(err) {
				if rerr := reopen(); rerr != nil {
					return rerr
				}
				// It exists but is of another kind; routing may still work
				// for the keys pushd uses.
				warn("exchange exists with another type; using it", "exchange", name, "want_type", kind)
				return nil
			}
			return fmt.Errorf("%w: exchange %q: %v", ErrIncompatible, name, err)
		}
		warn("exchange exists with other arguments; using it", "exchange", name)
		return nil
	}
	queue := func(name string, args amqp.Table) error {
		_, err := ch.QueueDeclare(name, true, false, false, false, args)
		if !isPrecondition(err) {
			if err != nil {
				return fmt.Errorf("declare queue %q: %w", name, err)
			}
			return nil
		}
		if err := reopen(); err != nil {
			return err
		}
		if _, err := ch.QueueDeclarePassive(name, true, false, false, false, nil); err != nil {
			return fmt.Errorf("%w: queue %q: %v", ErrIncompatible, name, err)
		}
		warn("queue exists with other arguments; using it (check dead-lettering and delivery limit)", "queue", name, "want_args", fmt.Sprint(args))
		return nil
	}
	bind := func(q, key, ex string) error {
		if err := ch.QueueBind(q, key, ex, false, nil); err != nil {
			return fmt.Errorf("bind %q to %q with %q: %w", q, ex, key, err)
		}
		return nil
	}

	if err := exchange(t.Exchange, amqp.ExchangeDirect); err != nil {
		return err
	}
	if err := exchange(t.DeadExchange, amqp.ExchangeFanout); err != nil {
		return err
	}
	if err := exchange(t.EventsExchange, amqp.ExchangeTopic); err != nil {
		return err
	}
	if err := queue(t.DeadQueue, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		return err
	}
	// The dead exchange is a fanout; bindings with the keys pushd uses keep
	// the dead queue fed if someone declared it as a direct exchange.
	for _, key := range []string{"", t.RoutingKey, t.HighRoutingKey, deadRoutingKey} {
		if err := bind(t.DeadQueue, key, t.DeadExchange); err != nil {
			return err
		}
	}
	for _, l := range []dispatcher.Lane{dispatcher.High, dispatcher.Normal} {
		name, key := t.lane(l)
		if err := queue(name, amqp.Table{
			amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
			"x-delivery-limit":       int64(t.DeliveryLimit),
			"x-dead-letter-exchange": t.DeadExchange,
			"x-dead-letter-strategy": "at-least-once",
			amqp.QueueOverflowArg:    amqp.QueueOverflowRejectPublish,
		}); err != nil {
			return err
		}
		if err := bind(name, key, t.Exchange); err != nil {
			return err
		}
		// Delay queues hold a message for a fixed time, then dead-letter it
		// back to the lane through the main exchange.
		for lvl := range delayLevels {
			if err := queue(delayQueue(name, lvl), amqp.Table{
				amqp.QueueTypeArg:           amqp.QueueTypeQuorum,
				amqp.QueueMessageTTLArg:     delayLevels[lvl].Milliseconds(),
				"x-dead-letter-exchange":    t.Exchange,
				"x-dead-letter-routing-key": key,
				"x-dead-letter-strategy":    "at-least-once",
				amqp.QueueOverflowArg:       amqp.QueueOverflowRejectPublish,
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// deadRoutingKey is the routing key of dead letters pushd publishes itself.
const deadRoutingKey = "dead"

func isPrecondition(err error) bool {
	var aerr *amqp.Error
	return errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed
}
