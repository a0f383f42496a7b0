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

// pruneListChanges trims the list change log every hour until ctx ends.
func pruneListChanges(ctx context.Context, st *store.Store, logger *slog.Logger) error {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		n, err := st.PruneListChanges(ctx, time.Now().Add(-listChangesKept))
		if err != nil {
			logger.Warn("cannot prune list changes", "err", err)
			continue
		}
		if n > 0 {
			logger.Info("pruned list changes", "deleted", n)
		}
	}
}
