package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

func TestBackoffDoublesWithJitterUpToTheMaxAndResets(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, time.Second
	steps := []time.Duration{lo, 2 * lo, 4 * lo, 8 * lo, hi, hi}
	for range 50 { // the jitter is random: the bounds must hold every time
		b := backoff{min: lo, max: hi}
		for i, step := range steps {
			if d := b.next(); d < step/2 || d > step {
				t.Fatalf("wait %d: %v, want within [%v, %v]", i+1, d, step/2, step)
			}
		}
		b.reset()
		if d := b.next(); d < lo/2 || d > lo {
			t.Fatalf("after reset: %v, want within [%v, %v]", d, lo/2, lo)
		}
	}
}

// consumeMetrics counts failed consumers by kind.
type consumeMetrics struct {
	mu    sync.Mutex
	fails map[string]int
}

func (*consumeMetrics) Connected(bool)                  {}
func (*consumeMetrics) ConnectFailed()                  {}
func (*consumeMetrics) Consuming(dispatcher.Lane, bool) {}
func (*consumeMetrics) Published(string, bool)          {}
func (*consumeMetrics) HandlerPanicked()                {}
func (m *consumeMetrics) ConsumeFailed(kind string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fails[kind]++
}

// attempt is one call of the consume step: the session it was given.
type attempt struct{ s *session }

// retrySetup returns a Broker whose consume step and waits are the test's:
// consume is called for each attempt with the loop's context, and every wait between attempts is
// sent on waits (and then returns at once).
func retrySetup(t *testing.T, consume func(ctx context.Context, n int, s *session) (bool, error)) (b *Broker, met *consumeMetrics, attempts chan attempt, waits chan time.Duration) {
	t.Helper()
	met = &consumeMetrics{fails: map[string]int{}}
	b = New(Config{ReconnectMin: 100 * time.Millisecond, ReconnectMax: time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), met)
	attempts, waits = make(chan attempt, 100), make(chan time.Duration, 100)
	n := 0
	b.consumeOnce = func(ctx context.Context, s *session, _ consumer, _ handler) (bool, error) {
		n++
		attempts <- attempt{s}
		return consume(ctx, n, s)
	}
	b.sleep = func(ctx context.Context, d time.Duration) bool {
		waits <- d
		return ctx.Err() == nil
	}
	return b, met, attempts, waits
}

// runLoop runs consumeLoop for a campaign queue until the test ends.
func runLoop(t *testing.T, b *Broker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.consumeLoop(ctx, consumer{link: b.camp, queue: "q", prefetch: 2, tag: "t"}, func(context.Context, dispatcher.Delivery) {})
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func next[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

// A consumer the broker refuses (a channel error: the queue's Raft member
// is down, say) is tried again on the same connection after a wait that
// doubles, with jitter, and starts from the minimum again once a consumer
// was taken.
func TestConsumerRefusedIsRetriedWithBackoffOnTheSameConnection(t *testing.T) {
	refused := errors.New(`consume "q": Exception (404) Reason: "NOT_FOUND"`)
	// Attempts 1-3 refused; 4 taken, then its channel closed; 5 refused;
	// 6 taken and kept.
	b, met, attempts, waits := retrySetup(t, func(ctx context.Context, n int, _ *session) (bool, error) {
		switch n {
		case 4:
			return true, errors.New("channel or consumer closed")
		case 6:
			<-ctx.Done()
			return true, nil
		}
		return false, refused
	})
	s := &session{closed: make(chan struct{})}
	b.camp.set(s)
	runLoop(t, b)

	const lo = 100 * time.Millisecond
	want := []time.Duration{lo, 2 * lo, 4 * lo, lo, 2 * lo} // step before each retry
	for i, step := range want {
		if a := next(t, attempts, "attempt"); a.s != s {
			t.Fatalf("attempt %d on another session", i+1)
		}
		if d := next(t, waits, "wait"); d < step/2 || d > step {
			t.Errorf("wait after attempt %d: %v, want within [%v, %v]", i+1, d, step/2, step)
		}
	}
	if a := next(t, attempts, "attempt 6"); a.s != s {
		t.Fatal("attempt 6 on another session")
	}
	met.mu.Lock()
	defer met.mu.Unlock()
	if met.fails["campaign"] != 5 || len(met.fails) != 1 {
		t.Errorf("consume failures %v, want 5 of kind campaign", met.fails)
	}
}

// A consumer whose connection the broker closed (RabbitMQ 3.10's 541 on a
// quorum queue whose Raft member is down) is tried again on the next
// connection, never on the closed one.
func TestConsumerWaitsForTheNextConnectionAfterTheBrokerClosedIt(t *testing.T) {
	first := &session{closed: make(chan struct{})}
	b, _, attempts, waits := retrySetup(t, func(ctx context.Context, n int, s *session) (bool, error) {
		if n == 1 {
			close(s.closed) // the broker closed the connection
			return false, errors.New(`Exception (541) Reason: "INTERNAL_ERROR"`)
		}
		<-ctx.Done()
		return true, nil
	})
	b.camp.set(first)
	runLoop(t, b)

	if a := next(t, attempts, "attempt 1"); a.s != first {
		t.Fatal("attempt 1 on another session")
	}
	next(t, waits, "wait")
	second := &session{closed: make(chan struct{})}
	b.camp.set(second) // Run reconnected
	if a := next(t, attempts, "attempt 2"); a.s != second {
		t.Fatal("attempt 2 was made on the closed connection")
	}
}
