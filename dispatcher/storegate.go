package dispatcher

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pushd/pushd/ratelimit"
)

// Backoff bounds of storeGate.retry.
const (
	storeRetryMin = 100 * time.Millisecond
	storeRetryMax = 5 * time.Second
)

// storeGate follows whether the store can be written, and makes the
// deliveries that need a write wait for it rather than fail.
//
// A delivery whose campaign cannot be recorded (a new campaign, or a
// finished one that gets batches again) must not be requeued: each
// requeue counts towards the queue's delivery limit, and the broker would
// dead-letter the batch within milliseconds. Its handler retries instead,
// with backoff, until the store takes the write; since a consumer hands
// out its next delivery only once its handler returned, consuming stops
// meanwhile, with no more than the prefetch unacknowledged. Readiness
// reports not ready and pushd_store_up is 0 until a write succeeds again.
type storeGate struct {
	log     *slog.Logger
	met     Metrics
	clock   ratelimit.Clock
	signals *testSignals

	mu   sync.Mutex
	down bool
}

func newStoreGate(log *slog.Logger, met Metrics, clock ratelimit.Clock, signals *testSignals) *storeGate {
	met.StoreUp(true)
	return &storeGate{log: log, met: met, clock: clock, signals: signals}
}

// Up reports whether the last store write succeeded.
func (g *storeGate) Up() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.down
}

// note records the outcome of a store write; it logs and reports each
// change between up and down.
func (g *storeGate) note(err error) {
	g.mu.Lock()
	changed := g.down != (err != nil)
	g.down = err != nil
	g.mu.Unlock()
	if !changed {
		return
	}
	g.met.StoreUp(err == nil)
	if err != nil {
		g.log.Error("the store cannot be written; deliveries that need it wait, and pushd reports not ready", "err", err)
	} else {
		g.log.Info("the store can be written again")
	}
}

// retry runs op until it succeeds, waiting between attempts from
// storeRetryMin up to storeRetryMax. It returns op's last error when ctx
// ends or lost is closed first (the delivery it works for is gone).
func (g *storeGate) retry(ctx context.Context, lost <-chan struct{}, op func(context.Context) error) error {
	wait := storeRetryMin
	for {
		err := op(ctx)
		g.note(err)
		if err == nil || ctx.Err() != nil {
			return err
		}
		t := g.clock.NewTimer(wait)
		g.signals.storeRetry.Signal(wait)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return err
		case <-lost:
			t.Stop()
			return err
		}
		wait = min(2*wait, storeRetryMax)
	}
}
