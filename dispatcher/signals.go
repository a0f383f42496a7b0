package dispatcher

import (
	"context"
	"time"

	"github.com/pushd/pushd/internal/testsignal"
	"github.com/pushd/pushd/ratelimit"
)

// testSignals are raised at known points so that tests order events on
// them instead of sleeping. They are inert unless a test calls init.
type testSignals struct {
	// bookkept: a bookkeeping pass (sync, counters, ending idle
	// campaigns) is over.
	bookkept testsignal.Signal[struct{}]
	// ledgerFlushed: a ledger flush tick is over.
	ledgerFlushed testsignal.Signal[struct{}]
	// runResolved: a run was resolved; the value is its ledger key.
	runResolved testsignal.Signal[string]
	// consumerStarted and consumerStopped: a campaign's queue consumer
	// started, or returned; the value is the campaign id.
	consumerStarted testsignal.Signal[string]
	consumerStopped testsignal.Signal[string]
	// campaignEnded: a campaign's queue was deleted after it went idle.
	campaignEnded testsignal.Signal[string]
	// finalLedgerWrite: a resolving run is about to write its last ledger
	// entry; the value is its key.
	finalLedgerWrite testsignal.Signal[string]
	// storeRetry: a store write failed and is retried after the value.
	storeRetry testsignal.Signal[time.Duration]
	// claimWait: a copy of a message another instance holds the claim on
	// waits; the value is its key. The timer is armed.
	claimWait testsignal.Signal[string]
	// providerWait: a run waits for an open breaker (its close or its
	// next probe); the value is the run's key. The timer is armed.
	providerWait testsignal.Signal[string]
}

func (s *testSignals) init() {
	s.bookkept.Init()
	s.ledgerFlushed.Init()
	s.runResolved.Init()
	s.consumerStarted.Init()
	s.consumerStopped.Init()
	s.campaignEnded.Init()
	s.finalLedgerWrite.Init()
	s.storeRetry.Init()
	s.claimWait.Init()
	s.providerWait.Init()
}

// ticker calls a function each time an interval has passed on a clock.
// The first timer is armed by newTicker, and each next one before the
// function runs: a test that saw the function's signal and moves a
// manual clock always moves an armed timer.
type ticker struct {
	clock    ratelimit.Clock
	interval time.Duration
	t        ratelimit.Timer
}

func newTicker(clock ratelimit.Clock, interval time.Duration) *ticker {
	return &ticker{clock: clock, interval: interval, t: clock.NewTimer(interval)}
}

// run calls f on each tick until ctx ends.
func (k *ticker) run(ctx context.Context, f func()) {
	for {
		select {
		case <-ctx.Done():
			k.t.Stop()
			return
		case <-k.t.C():
		}
		k.t = k.clock.NewTimer(k.interval)
		f()
	}
}

// withClockTimeout is context.WithTimeout on clock's time.
func withClockTimeout(parent context.Context, clock ratelimit.Clock, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	t := clock.NewTimer(d)
	go func() {
		defer t.Stop()
		select {
		case <-t.C():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
