package queue_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/queue"
	"github.com/pushd/pushd/queue/queuetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type nopMetrics struct{ connects, consumeFails atomic.Int32 }

func (m *nopMetrics) Connected(up bool) {
	if up {
		m.connects.Add(1)
	}
}
func (*nopMetrics) ConnectFailed()                  {}
func (*nopMetrics) Consuming(dispatcher.Lane, bool) {}
func (*nopMetrics) Published(string, bool)          {}
func (*nopMetrics) HandlerPanicked()                {}
func (m *nopMetrics) ConsumeFailed(string)          { m.consumeFails.Add(1) }

type bundle struct {
	broker *queue.Broker
	top    queue.Topology
	ch     *amqp.Channel // a separate test connection
	met    *nopMetrics
	stop   func()
}

// setup starts a Broker on a test topology, through url (the broker's, or a
// proxy's).
func setup(t *testing.T, url string, cfg queue.Config) *bundle {
	t.Helper()
	direct := queuetest.URL(t)
	if url == "" {
		url = direct
	}
	b := &bundle{top: queuetest.Topology(t, direct), met: &nopMetrics{}}
	cfg.URL = url
	cfg.Topology = b.top
	if cfg.ReconnectMin == 0 {
		cfg.ReconnectMin = 50 * time.Millisecond
		cfg.ReconnectMax = 200 * time.Millisecond
	}
	b.broker = queue.New(cfg, logger(t), b.met)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.broker.Run(ctx) }()
	b.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(b.stop)
	b.ch = queuetest.Conn(t, direct)
	// Connected is reported once the whole topology, bindings included, is
	// declared.
	testwait.For(t, waitLimit, "connected and topology declared", func() bool { return b.met.connects.Load() >= 1 })
	return b
}

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// waitLimit bounds every wait of these tests: generous, since rabbitmqctl's
// counts of quorum queues lag by a few seconds and other tests may load the
// broker.
const waitLimit = 30 * time.Second

// receive returns the next value from c, failing the test if none comes
// within waitLimit.
func receive[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
	}
	var zero T
	return zero
}

// isClosed reports whether c is closed, without waiting.
var isClosed = queue.IsClosed

// consume runs Consume with h until the returned stop is called.
func consume(t *testing.T, b *queue.Broker, h func(context.Context, dispatcher.Delivery)) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Consume(ctx, h) }()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return stop
}

func TestConsumeBothLanesAndAck(t *testing.T) {
	b := setup(t, "", queue.Config{})
	got := make(chan string, 10)
	consume(t, b.broker, func(_ context.Context, d dispatcher.Delivery) {
		got <- fmt.Sprintf("%s:%s:%d:%v", d.Lane, d.Body, d.Hop.Attempt, d.Republished)
		if err := d.Acker.Ack(); err != nil {
			t.Errorf("ack: %v", err)
		}
	})
	testwait.For(t, waitLimit, "ready", b.broker.Ready)
	queuetest.Publish(t, b.ch, b.top.Exchange, b.top.RoutingKey, []byte("n1"))
	queuetest.Publish(t, b.ch, b.top.Exchange, b.top.HighRoutingKey, []byte("h1"))
	seen := map[string]bool{}
	for range 2 {
		select {
		case s := <-got:
			seen[s] = true
		case <-time.After(10 * time.Second):
			t.Fatal("deliveries missing")
		}
	}
	if !seen["normal:n1:0:false"] || !seen["high:h1:0:false"] {
		t.Errorf("got %v", seen)
	}
	testwait.For(t, waitLimit, "queues empty", func() bool {
		r1, u1 := queuetest.Counts(t, b.top.Queue)
		r2, u2 := queuetest.Counts(t, b.top.HighQueue)
		return r1+u1+r2+u2 == 0
	})
}

func TestDeclareIsIdempotentAndToleratesAProducersDeclaration(t *testing.T) {
	direct := queuetest.URL(t)
	top := queuetest.Topology(t, direct)
	// A producer declared the normal queue first, as a plain quorum queue
	// without pushd's arguments.
	ch := queuetest.Conn(t, direct)
	if _, err := ch.QueueDeclare(top.Queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		br := queue.New(queue.Config{URL: direct, Topology: top, ReconnectMin: 50 * time.Millisecond}, logger(t), &nopMetrics{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = br.Run(ctx) }()
		stopConsume := consume(t, br, func(_ context.Context, d dispatcher.Delivery) { _ = d.Acker.Ack() })
		testwait.For(t, waitLimit, fmt.Sprintf("ready (start %d)", i+1), br.Ready)
		stopConsume()
		cancel()
		<-done
	}
	// The dead-letter binding works even though the producer's queue lacks
	// pushd's arguments: pushd publishes dead letters itself.
	ch = queuetest.Conn(t, direct)
	if n := queuetest.Ready(t, ch, top.DeadQueue); n != 0 {
		t.Errorf("dead queue has %d messages", n)
	}
}

func TestHoldDelaysAndReturnsToTheLane(t *testing.T) {
	b := setup(t, "", queue.Config{})
	type arrival struct {
		at      time.Time
		attempt int
		hold    time.Time
		lane    dispatcher.Lane
		body    string
		key     string
	}
	got := make(chan arrival, 4)
	consume(t, b.broker, func(_ context.Context, d dispatcher.Delivery) {
		got <- arrival{time.Now(), d.Hop.Attempt, d.HoldUntil, d.Lane, string(d.Body), d.Hop.Key}
		_ = d.Acker.Ack()
	})
	testwait.For(t, waitLimit, "ready", b.broker.Ready)
	ctx := context.Background()
	start := time.Now()
	until := start.Add(2500 * time.Millisecond)
	if err := b.broker.Hold(ctx, dispatcher.High, []byte("later"), dispatcher.Hop{Attempt: 2, Key: "k-later"}, until); err != nil {
		t.Fatal(err)
	}
	if err := b.broker.Hold(ctx, dispatcher.Normal, []byte("now"), dispatcher.Hop{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	first := <-got
	if first.body != "now" || first.lane != dispatcher.Normal || first.attempt != 0 || !first.hold.IsZero() || first.key != "" {
		t.Errorf("immediate hold: %+v", first)
	}
	select {
	case a := <-got:
		if a.body != "later" || a.lane != dispatcher.High || a.attempt != 2 || a.key != "k-later" || a.hold.UnixMilli() != until.UnixMilli() {
			t.Errorf("delayed hold: %+v", a)
		}
		// Delay levels are powers of two seconds: 2.5s goes to the 2s
		// level, and the dispatcher holds the rest again.
		if wait := a.at.Sub(start); wait < 1900*time.Millisecond || wait > 5*time.Second {
			t.Errorf("came back after %v, want about 2s", wait)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held message did not come back")
	}
}

// A producer may set pushd's own headers; they must not change what pushd
// does with its message (issue 13, item 5): the delivery looks like any
// producer's, while the same headers set by pushd (Hold) are kept.
func TestProducerCannotSetPushdHeaders(t *testing.T) {
	b := setup(t, "", queue.Config{})
	got := make(chan dispatcher.Delivery, 4)
	consume(t, b.broker, func(_ context.Context, d dispatcher.Delivery) {
		got <- d
		_ = d.Acker.Ack()
	})
	testwait.For(t, waitLimit, "ready", b.broker.Ready)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	dc, err := b.ch.PublishWithDeferredConfirmWithContext(ctx, b.top.Exchange, b.top.RoutingKey, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: []byte("forged"),
		Headers: amqp.Table{
			queue.HeaderKey: "another-batchs-key", queue.HeaderAttempt: int32(1),
			queue.HeaderHoldUntil: time.Now().Add(100 * 365 * 24 * time.Hour).UnixMilli(),
			"x-pushd-seal":        "00",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(ctx); !ok || err != nil {
		t.Fatalf("not confirmed: %v %v", ok, err)
	}
	d := receive(t, got, "the forged message")
	if d.Republished || d.Hop != (dispatcher.Hop{}) || !d.HoldUntil.IsZero() {
		t.Errorf("forged headers trusted: republished %v, hop %+v, hold %v", d.Republished, d.Hop, d.HoldUntil)
	}
	if err := b.broker.Hold(ctx, dispatcher.Normal, []byte("own"), dispatcher.Hop{Attempt: 1, Key: "k-own"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	d = receive(t, got, "pushd's own message")
	if !d.Republished || d.Hop.Attempt != 1 || d.Hop.Key != "k-own" {
		t.Errorf("pushd's own headers lost: republished %v, hop %+v", d.Republished, d.Hop)
	}
}

func TestDeadLetterCarriesTheReason(t *testing.T) {
	b := setup(t, "", queue.Config{})
	err := b.broker.DeadLetter(context.Background(), []byte("{bad"), dispatcher.DeadLetter{
		Reason: "retries_exhausted", Detail: "no success after 5 attempts", Attempts: 5,
		Provider: "apns", Status: 503, ProviderReason: "ServiceUnavailable",
	})
	if err != nil {
		t.Fatal(err)
	}
	d := queuetest.Get(t, b.ch, b.top.DeadQueue, 5*time.Second)
	if string(d.Body) != "{bad" {
		t.Errorf("body %q", d.Body)
	}
	h := d.Headers
	if h[queue.HeaderReason] != "retries_exhausted" || h[queue.HeaderDetail] != "no success after 5 attempts" ||
		h[queue.HeaderAttempts] != int32(5) || h[queue.HeaderProvider] != "apns" ||
		h[queue.HeaderStatus] != int32(503) || h[queue.HeaderPReason] != "ServiceUnavailable" {
		t.Errorf("headers %v", h)
	}
	// Its own ledger key: sent again if it is moved back to a lane.
	if k, _ := h[queue.HeaderKey].(string); !strings.HasPrefix(k, "dead-") || len(k) < 20 {
		t.Errorf("dead letter key %q", k)
	}
}

func TestUnroutablePublishFails(t *testing.T) {
	b := setup(t, "", queue.Config{})
	// Remove the dead queue's bindings by deleting the queue: the dead
	// letter has nowhere to go and must not be reported as published.
	if _, err := b.ch.QueueDelete(b.top.DeadQueue, false, false, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.broker.DeadLetter(ctx, []byte("x"), dispatcher.DeadLetter{Reason: "schema"})
	if err == nil {
		t.Fatal("publishing to nowhere succeeded")
	}
}

func TestStopConsumingRequeuesUnhandledAndKeepsInFlightAckable(t *testing.T) {
	for _, tc := range []struct {
		name      string
		resolve   func(dispatcher.Acker) error
		wantReady int // in the queue once the delivery in flight is resolved
	}{
		{"ack", dispatcher.Acker.Ack, 4},
		{"requeue", dispatcher.Acker.Requeue, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, "", queue.Config{Prefetch: 5})
			for i := range 5 {
				queuetest.Publish(t, b.ch, b.top.Exchange, b.top.RoutingKey, fmt.Appendf(nil, "m%d", i))
			}
			held := make(chan dispatcher.Delivery, 5)
			stop := consume(t, b.broker, func(ctx context.Context, d dispatcher.Delivery) {
				held <- d
				// The handler is busy with the first delivery until the
				// consumer is stopped, so no other is handed over.
				<-ctx.Done()
			})
			first := receive(t, held, "a delivery at the handler")
			// (The broker's AMQP count of ready messages is exact at once;
			// rabbitmqctl's counts lag by seconds, so they are read once,
			// at the end.)
			testwait.For(t, waitLimit, "prefetch filled", func() bool {
				return queuetest.Ready(t, b.ch, b.top.Queue) == 0
			})
			stop()
			if n := len(held); n != 0 {
				t.Fatalf("%d more deliveries handed over after the first", n)
			}
			// Deliveries prefetched but never handed over went back to the
			// queue; the one in the handler is still unacked.
			testwait.For(t, waitLimit, "unhandled deliveries requeued", func() bool {
				return queuetest.Ready(t, b.ch, b.top.Queue) == 4
			})
			if isClosed(first.Acker.Lost()) {
				t.Fatal("delivery in flight reported lost while its channel lives")
			}
			// The delivery in flight can still be resolved after Consume
			// returned. It was the last one: the consumer closes its channel
			// now, which does not make the resolved delivery lost.
			if err := tc.resolve(first.Acker); err != nil {
				t.Fatalf("%s after stop: %v", tc.name, err)
			}
			receive(t, queue.CloseHandled(first), "the stopped consumer's channel closed")
			if isClosed(first.Acker.Lost()) {
				t.Errorf("delivery reported lost after a successful %s", tc.name)
			}
			testwait.For(t, waitLimit, fmt.Sprintf("%d ready, none unacked", tc.wantReady), func() bool {
				ready, unacked := queuetest.Counts(t, b.top.Queue)
				return ready == tc.wantReady && unacked == 0
			})
		})
	}
}

// TestLostReportsExactlyTheUnresolvedDeliveries checks Lost's contract when
// a channel dies under its consumer: the deliveries not acked or requeued
// yet report lost, cannot be acked, and come back from the broker; the ones
// resolved before never report lost.
func TestLostReportsExactlyTheUnresolvedDeliveries(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(p *queuetest.Proxy, acked dispatcher.Delivery)
	}{
		{"channel error", func(_ *queuetest.Proxy, acked dispatcher.Delivery) {
			// Acking a delivery twice is a channel error: the broker
			// closes the channel (PRECONDITION_FAILED, unknown delivery
			// tag), the connection lives on.
			_ = acked.Acker.Ack()
		}},
		{"connection reset", func(p *queuetest.Proxy, _ dispatcher.Delivery) { p.Reset() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy, url := queuetest.ProxyURL(t, queuetest.URL(t))
			b := setup(t, url, queue.Config{Prefetch: 3})
			got := make(chan dispatcher.Delivery, 10)
			consume(t, b.broker, func(_ context.Context, d dispatcher.Delivery) { got <- d })
			testwait.For(t, waitLimit, "ready", b.broker.Ready)
			bodies := []string{"acked", "requeued", "unresolved"}
			for _, body := range bodies {
				queuetest.Publish(t, b.ch, b.top.Exchange, b.top.RoutingKey, []byte(body))
			}
			del := map[string]dispatcher.Delivery{}
			for range bodies {
				d := receive(t, got, "the three deliveries")
				del[string(d.Body)] = d
			}
			if err := del["acked"].Acker.Ack(); err != nil {
				t.Fatal(err)
			}
			if err := del["requeued"].Acker.Requeue(); err != nil {
				t.Fatal(err)
			}
			tc.kill(proxy, del["acked"])

			lost := del["unresolved"]
			receive(t, lost.Acker.Lost(), "the unresolved delivery reported lost")
			receive(t, queue.CloseHandled(lost), "the channel's close handled")
			for _, body := range []string{"acked", "requeued"} {
				if isClosed(del[body].Acker.Lost()) {
					t.Errorf("%s delivery reported lost", body)
				}
			}
			if err := lost.Acker.Ack(); err == nil {
				t.Error("ack of a lost delivery succeeded")
			}
			// The broker delivers it again, on a new channel.
			for {
				d := receive(t, got, "the lost delivery delivered again")
				if isClosed(d.Acker.Lost()) {
					continue // the requeued one, delivered again before the kill
				}
				if err := d.Acker.Ack(); err != nil {
					t.Fatalf("ack on the new channel: %v", err)
				}
				if string(d.Body) == "unresolved" {
					break
				}
			}
		})
	}
}

func TestReconnectsAfterConnectionReset(t *testing.T) {
	proxy, url := queuetest.ProxyURL(t, queuetest.URL(t))
	b := setup(t, url, queue.Config{})
	got := make(chan dispatcher.Delivery, 10)
	consume(t, b.broker, func(_ context.Context, d dispatcher.Delivery) { got <- d })
	testwait.For(t, waitLimit, "ready", b.broker.Ready)

	queuetest.Publish(t, b.ch, b.top.Exchange, b.top.RoutingKey, []byte("before"))
	old := <-got
	proxy.Reset()
	select {
	case <-old.Acker.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("delivery of the dead channel not reported lost")
	}
	if err := old.Acker.Ack(); err == nil {
		t.Error("ack of a delivery from the dead channel succeeded")
	}
	testwait.For(t, waitLimit, "reconnected", func() bool { return b.met.connects.Load() >= 2 && b.broker.Ready() })
	// The unacked message comes back on the new connection, with the new one.
	queuetest.Publish(t, b.ch, b.top.Exchange, b.top.RoutingKey, []byte("after"))
	bodies := map[string]bool{}
	for range 2 {
		select {
		case d := <-got:
			bodies[string(d.Body)] = true
			if err := d.Acker.Ack(); err != nil {
				t.Errorf("ack on new connection: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("after reconnect got only %v", bodies)
		}
	}
	if !bodies["before"] || !bodies["after"] {
		t.Errorf("got %v", bodies)
	}
}

func TestDetectsASilentConnectionByHeartbeat(t *testing.T) {
	proxy, url := queuetest.ProxyURL(t, queuetest.URL(t))
	const silence = 4 * time.Second
	b := setup(t, url, queue.Config{Heartbeat: silence})
	consume(t, b.broker, func(_ context.Context, d dispatcher.Delivery) { _ = d.Acker.Ack() })
	testwait.For(t, waitLimit, "ready", b.broker.Ready)
	proxy.Freeze()
	frozen := time.Now()
	testwait.For(t, waitLimit, "connection declared dead", func() bool { return !b.broker.Ready() })
	// The negotiated heartbeat is 2s: the link is dropped 3s after the
	// last frame from the broker, which came before the freeze.
	took := time.Since(frozen)
	t.Logf("silent link detected after %v (amqp.heartbeat %v)", took, silence)
	if took > silence {
		t.Errorf("silent link detected after %v, want within amqp.heartbeat (%v)", took, silence)
	}
	// Reconnection attempts while the link is still silent must time out
	// (their handshake gets no answer), not hang: stay frozen until one
	// attempt has given up and the next one has started (the first
	// connection, then two attempts).
	testwait.For(t, waitLimit, "a reconnection attempt while frozen to give up and another to start",
		func() bool { return proxy.Accepted() >= 3 })
	proxy.Thaw()
	thawed := time.Now()
	testwait.For(t, waitLimit, "reconnected", b.broker.Ready)
	t.Logf("reconnected %v after the link came back", time.Since(thawed).Round(time.Millisecond))
}

func TestPublishWaitsForTheConnection(t *testing.T) {
	proxy, url := queuetest.ProxyURL(t, queuetest.URL(t))
	b := setup(t, url, queue.Config{})
	testwait.For(t, waitLimit, "connected", func() bool { return b.met.connects.Load() >= 1 })
	proxy.Refuse(true)
	proxy.Reset()
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		close(started)
		errc <- b.broker.DeadLetter(ctx, []byte("x"), dispatcher.DeadLetter{Reason: "schema"})
	}()
	// The publish is waiting once it started and a reconnection attempt
	// after that was refused.
	<-started
	refused := proxy.Accepted()
	testwait.For(t, waitLimit, "a reconnection attempt refused", func() bool { return proxy.Accepted() > refused })
	select {
	case err := <-errc:
		t.Fatalf("publish returned while the broker was unreachable: %v", err)
	default:
	}
	proxy.Refuse(false)
	if err := <-errc; err != nil {
		t.Fatalf("publish across reconnect: %v", err)
	}
	d := queuetest.Get(t, b.ch, b.top.DeadQueue, 5*time.Second)
	if string(d.Body) != "x" {
		t.Errorf("body %q", d.Body)
	}
}

func TestPublishEventsArriveOnce(t *testing.T) {
	b := setup(t, "", queue.Config{})
	q, err := b.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ch.QueueBind(q.Name, "token.invalid", b.top.EventsExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for i := range 50 {
		bodies = append(bodies, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	if err := b.broker.PublishEvents(context.Background(), "token.invalid", bodies); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 50 {
		d := queuetest.Get(t, b.ch, q.Name, 5*time.Second)
		if d.Type != "token.invalid" || d.DeliveryMode != amqp.Persistent {
			t.Errorf("event properties: type %q mode %d", d.Type, d.DeliveryMode)
		}
		seen[string(d.Body)] = true
	}
	if len(seen) != 50 {
		t.Errorf("%d distinct events", len(seen))
	}
	if n := queuetest.Ready(t, b.ch, q.Name); n != 0 {
		t.Errorf("%d extra events", n)
	}
}

func TestPoisonMessageIsDeadLetteredAfterTheDeliveryLimit(t *testing.T) {
	b := setup(t, "", queue.Config{})
	var poisoned atomic.Int32
	good := make(chan string, 10)
	consume(t, b.broker, func(_ context.Context, d dispatcher.Delivery) {
		if string(d.Body) == "poison" {
			poisoned.Add(1)
			panic("processing this message fails every time")
		}
		good <- string(d.Body)
		_ = d.Acker.Ack()
	})
	testwait.For(t, waitLimit, "ready", b.broker.Ready)
	queuetest.Publish(t, b.ch, b.top.Exchange, b.top.RoutingKey, []byte("poison"))
	for i := range 3 {
		queuetest.Publish(t, b.ch, b.top.Exchange, b.top.RoutingKey, fmt.Appendf(nil, "good-%d", i))
	}
	// The others are handled while the poison goes round.
	for range 3 {
		select {
		case <-good:
		case <-time.After(10 * time.Second):
			t.Fatal("good messages held up by the poison one")
		}
	}
	d := queuetest.Get(t, b.ch, b.top.DeadQueue, 30*time.Second)
	if string(d.Body) != "poison" {
		t.Fatalf("dead letter %q", d.Body)
	}
	reason, _ := d.Headers["x-first-death-reason"].(string)
	n := poisoned.Load()
	t.Logf("poison message handled %d times, then dead-lettered by the broker (%s)", n, reason)
	if reason != "delivery_limit" {
		t.Errorf("dead-letter reason %q, want delivery_limit (headers %v)", reason, d.Headers)
	}
	if limit := int32(b.top.DeliveryLimit); n < limit || n > limit+1 {
		t.Errorf("poison handled %d times, want the delivery limit %d (+1)", n, limit)
	}
	// No loop: it does not come back. A message published now is handled
	// after the poison one would have been, had it come back to the lane.
	queuetest.Publish(t, b.ch, b.top.Exchange, b.top.RoutingKey, []byte("marker"))
	for receive(t, good, "the marker message") != "marker" {
	}
	if got := poisoned.Load(); got != n {
		t.Errorf("poison handled again after being dead-lettered (%d times)", got)
	}
	if ready, unacked := queuetest.Counts(t, b.top.Queue); ready+unacked != 0 {
		t.Errorf("lane holds %d ready, %d unacked", ready, unacked)
	}
}
