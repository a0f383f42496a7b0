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

// staleAudienceImport is how long after its start an audience import
// that has not finished counts as dead (its pushd stopped): longer than
// the admin module lets one run.
const staleAudienceImport = 2 * time.Hour

// retention says how long housekeeping keeps what it prunes.
type retention struct {
	ledger                  time.Duration // dedup ledger rows
	sessionIdle, sessionMax time.Duration // console sessions (admin.session_idle, session_max)
}

// housekeeping prunes the store every hour until ctx ends: the list change
// log, the dedup ledger rows older than keep.ledger, the members of
// deleted audiences and of dead imports, and the console sessions that
// ended by timeout without being used again.
func housekeeping(ctx context.Context, st *store.Store, keep retention, logger *slog.Logger) error {
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
			return st.PruneLedger(ctx, time.Now().Add(-keep.ledger))
		})
		prune(logger, "audience members", func() (int, error) {
			return st.CleanAudiences(ctx, time.Now().Add(-staleAudienceImport))
		})
		prune(logger, "sessions", func() (int, error) {
			now := time.Now()
			return st.PruneSessions(ctx, now.Add(-keep.sessionIdle), now.Add(-keep.sessionMax))
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
