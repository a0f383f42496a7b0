package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/pushd/pushd/store"
)

// listChangesKept is how long list changes stay in the store's change log.
// An instance that was away longer finds a gap in the revisions and
// reloads the lists whole.
const listChangesKept = 24 * time.Hour

// housekeeping prunes the store every hour until ctx ends: the list change
// log, and the dedup ledger rows older than ledgerKept.
func housekeeping(ctx context.Context, st *store.Store, ledgerKept time.Duration, logger *slog.Logger) error {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		prune(logger, "list changes", func() (int, error) {
			return st.PruneListChanges(ctx, time.Now().Add(-listChangesKept))
		})
		prune(logger, "ledger rows", func() (int, error) {
			return st.PruneLedger(ctx, time.Now().Add(-ledgerKept))
		})
	}
}

func prune(logger *slog.Logger, what string, f func() (int, error)) {
	n, err := f()
	if err != nil {
		logger.Warn("cannot prune "+what, "err", err)
		return
	}
	if n > 0 {
		logger.Info("pruned "+what, "deleted", n)
	}
}
