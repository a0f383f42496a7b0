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

// housekeepingEvery is how often the housekeeper prunes the store.
const housekeepingEvery = time.Hour

// housekeeper prunes the store: the list change log, the dedup ledger,
// the members of deleted audiences and of dead imports, the ended
// campaigns and list snapshots past their retention, and the console
// sessions that ended by timeout. Every instance runs
// one; the deletes are idempotent, so instances sharing a store may prune
// at once.
type housekeeper struct {
	st  *store.Store
	now func() time.Time
	log *slog.Logger
	// ledgerKept: ledger rows not updated for this long go.
	ledgerKept time.Duration
	// snapshotsKept: list snapshots older than this go; 0 keeps them.
	snapshotsKept time.Duration
	// campaignsKept: campaigns that ended longer ago than this go; 0
	// keeps them.
	campaignsKept time.Duration
	// sessionIdle, sessionMax: console sessions idle or older than these
	// (admin.session_idle, admin.session_max) go.
	sessionIdle, sessionMax time.Duration
}

// Run prunes every housekeepingEvery until ctx ends.
func (h housekeeper) Run(ctx context.Context) error {
	tick := time.NewTicker(housekeepingEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		h.prune(ctx)
	}
}

// prune prunes once, at the clock's time. A failure is logged, and the
// next round tries again.
func (h housekeeper) prune(ctx context.Context) {
	now := h.now()
	h.pruneOne("list changes", func() (int, error) {
		return h.st.PruneListChanges(ctx, now.Add(-listChangesKept))
	})
	if h.campaignsKept > 0 {
		h.pruneOne("ended campaigns", func() (int, error) {
			return h.st.PruneCampaigns(ctx, now.Add(-h.campaignsKept))
		})
	}
	// A campaign's ledger rows were last written no later than the
	// campaign itself (it ends once idle, and a late batch counts in it),
	// so pruning the ledger at the earlier of the two cuts takes the rows
	// of the pruned campaigns with them.
	ledgerKept := h.ledgerKept
	if h.campaignsKept > 0 {
		ledgerKept = min(ledgerKept, h.campaignsKept)
	}
	h.pruneOne("ledger rows", func() (int, error) {
		return h.st.PruneLedger(ctx, now.Add(-ledgerKept))
	})
	h.pruneOne("audience members", func() (int, error) {
		return h.st.CleanAudiences(ctx, now.Add(-staleAudienceImport))
	})
	if h.snapshotsKept > 0 {
		h.pruneOne("list snapshots", func() (int, error) {
			return h.st.PruneListSnapshots(ctx, now.Add(-h.snapshotsKept))
		})
	}
	h.pruneOne("sessions", func() (int, error) {
		return h.st.PruneSessions(ctx, now.Add(-h.sessionIdle), now.Add(-h.sessionMax))
	})
}

func (h housekeeper) pruneOne(what string, f func() (int, error)) {
	n, err := f()
	if err != nil {
		h.log.Warn("cannot prune "+what, "err", err)
		return
	}
	if n > 0 {
		h.log.Info("pruned "+what, "deleted", n)
	}
}
