package lists

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ReasonNotWhitelisted is the reason Filter gives for a recipient of a test
// campaign who is not on the whitelist.
const ReasonNotWhitelisted = "not_whitelisted"

// Defaults of Config.
const (
	DefaultPollInterval   = 500 * time.Millisecond
	DefaultChangesPerPoll = 10000
)

// Config tunes Lists.
type Config struct {
	// PollInterval is how often Run asks the Source for changes. Default
	// 500ms: a change made on one instance reaches the others within
	// about a second. Zero means the default.
	PollInterval time.Duration
	// ChangesPerPoll is the most changes Run asks the Source for at once;
	// while it gets that many it asks again at once. Default 10000. Zero
	// means the default.
	ChangesPerPoll int
}

// Validate reports a negative setting, naming it.
func (c Config) Validate() error {
	if c.PollInterval < 0 {
		return fmt.Errorf("poll_interval: %v: must not be negative", c.PollInterval)
	}
	if c.ChangesPerPoll < 0 {
		return fmt.Errorf("changes_per_poll: %d: must not be negative", c.ChangesPerPoll)
	}
	return nil
}

// withDefaults returns c with each unset (or negative) field set to its
// default.
func (c Config) withDefaults() Config {
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ChangesPerPoll <= 0 {
		c.ChangesPerPoll = DefaultChangesPerPoll
	}
	return c
}

// Lists holds the blacklist and the whitelist of an instance, each in a
// Set, built from a Source and kept up to date with its changes. Filter may
// be called from any number of goroutines at any time; Load, Run and Poke
// may be called concurrently with it and with each other.
//
// Until Load (or Run) has succeeded once, both lists are empty: every
// recipient passes the blacklist and none passes the whitelist. Call Load
// before sending (and see Loaded for readiness).
type Lists struct {
	src Source
	log *slog.Logger
	cfg Config

	black, white atomic.Pointer[Set]
	rev          atomic.Int64 // the last change applied
	loaded       atomic.Bool
	poke         chan struct{}

	// mu serializes Load and the polls of Run, so that changes are
	// applied once and in order.
	mu sync.Mutex
}

// New returns Lists that read from src. Both lists are empty until Load. A
// nil logger discards logs; zero fields of cfg take their defaults.
func New(src Source, logger *slog.Logger, cfg Config) *Lists {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Lists{src: src, log: logger, cfg: cfg.withDefaults(), poke: make(chan struct{}, 1)}
	l.black.Store(NewSet())
	l.white.Store(NewSet())
	return l
}

// Load builds both lists from the Source and replaces the ones in use,
// each at once: lookups see the old list or the new one, never part of
// one. It records the Source's revision first, so that Run then applies
// every change made during or after the scan (applying one the scan
// already saw does no harm).
func (l *Lists) Load(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.load(ctx)
}

// load is Load; the caller holds l.mu.
func (l *Lists) load(ctx context.Context) error {
	start := time.Now()
	rev, err := l.src.ListRev(ctx)
	if err != nil {
		return fmt.Errorf("read list revision: %w", err)
	}
	black, err := l.build(ctx, Blacklist)
	if err != nil {
		return err
	}
	white, err := l.build(ctx, Whitelist)
	if err != nil {
		return err
	}
	l.black.Store(black)
	l.white.Store(white)
	l.rev.Store(rev)
	l.loaded.Store(true)
	l.log.Info("lists loaded", "blacklist", black.Len(), "whitelist", white.Len(),
		"rev", rev, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// build returns a new Set of one list, read from the Source.
func (l *Lists) build(ctx context.Context, list Name) (*Set, error) {
	s := NewSet()
	err := l.src.EachEntry(ctx, list, func(e Entry) error {
		s.Add(e.Kind, e.Platform, e.Value, e.Reason)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", list, err)
	}
	return s, nil
}

// Run keeps the lists up to date until ctx is done, then returns nil. Every
// PollInterval, or at once after Poke, it reads the changes after Rev from
// the Source and applies them in order; an OpReload rebuilds its list into
// a new Set and swaps it in whole. If Load has not succeeded yet, Run loads
// the lists first. An error is logged and the work retried at the next
// poll; the lists keep their last state meanwhile.
func (l *Lists) Run(ctx context.Context) error {
	tick := time.NewTicker(l.cfg.PollInterval)
	defer tick.Stop()
	var (
		failures int       // polls failed in a row
		logged   time.Time // when the last failure was logged
	)
	for {
		err := l.poll(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			// Log the first failure, then once a minute while it lasts.
			if failures == 1 || time.Since(logged) >= time.Minute {
				l.log.Warn("cannot update lists; retrying", "err", err, "failures", failures, "rev", l.Rev())
				logged = time.Now()
			}
		case failures > 0:
			l.log.Info("lists updated again", "failures", failures, "rev", l.Rev())
			failures = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-l.poke:
		}
	}
}

// Poke makes Run poll at once rather than at its next tick. The admin
// module calls it after changing a list, so that this instance applies the
// change within milliseconds. It never blocks.
func (l *Lists) Poke() {
	select {
	case l.poke <- struct{}{}:
	default: // a poke is already pending
	}
}

// Rev returns the revision of the last change applied (or the one Load
// read).
func (l *Lists) Rev() int64 { return l.rev.Load() }

// Loaded reports whether the lists have been loaded from the Source, by
// Load or Run. Until then Filter lets every recipient through the
// blacklist: a readiness check should wait for it.
func (l *Lists) Loaded() bool { return l.loaded.Load() }

// Len returns the number of entries of a list (0 for an unknown name).
func (l *Lists) Len(list Name) int {
	if s := l.set(list); s != nil {
		return s.Len()
	}
	return 0
}

// set returns the Set of a list in use, or nil for an unknown name.
func (l *Lists) set(list Name) *Set {
	switch list {
	case Blacklist:
		return l.black.Load()
	case Whitelist:
		return l.white.Load()
	}
	return nil
}

// setPtr returns where the Set of a list is kept, or nil for an unknown
// name.
func (l *Lists) setPtr(list Name) *atomic.Pointer[Set] {
	switch list {
	case Blacklist:
		return &l.black
	case Whitelist:
		return &l.white
	}
	return nil
}

// Sync applies the Source's changes made so far before it returns: an
// instance that just changed a list calls it so that its own next lookup
// sees the change (other instances see it within PollInterval).
func (l *Lists) Sync(ctx context.Context) error { return l.poll(ctx) }

// poll applies the Source's changes after Rev, asking again while it gets
// a full page, or loads the lists if they are not loaded yet.
func (l *Lists) poll(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.loaded.Load() {
		return l.load(ctx)
	}
	for {
		since := l.rev.Load()
		changes, err := l.src.ListChanges(ctx, since, l.cfg.ChangesPerPoll)
		if err != nil {
			return fmt.Errorf("read list changes after %d: %w", since, err)
		}
		if len(changes) > 0 && changes[0].Rev > since+1 {
			// Revisions have no gaps: the changes this instance missed
			// were pruned from the log while it was away. Start over.
			l.log.Warn("list changes missing from the log; reloading the lists", "after", since, "next", changes[0].Rev)
			return l.load(ctx)
		}
		if err := l.apply(ctx, changes); err != nil {
			return err
		}
		if len(changes) < l.cfg.ChangesPerPoll {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// apply applies changes in order, recording each one's Rev. It stops at
// the first reload that fails, so that the next poll starts there. A
// reload followed by another of the same list in changes is skipped: the
// last one rebuilds the list from what the Source holds then.
func (l *Lists) apply(ctx context.Context, changes []Change) error {
	var lastReload [2]int // index of the last OpReload of the blacklist, the whitelist
	for i, c := range changes {
		if c.Op == OpReload {
			switch c.Entry.List {
			case Blacklist:
				lastReload[0] = i + 1
			case Whitelist:
				lastReload[1] = i + 1
			}
		}
	}
	for i, c := range changes {
		if c.Rev <= l.rev.Load() {
			continue // already applied; a Source should not return it
		}
		e := c.Entry
		ptr := l.setPtr(e.List)
		switch {
		case ptr == nil:
			l.log.Warn("list change ignored: unknown list", "rev", c.Rev, "list", e.List, "op", c.Op)
		case c.Op == OpAdd:
			ptr.Load().Add(e.Kind, e.Platform, e.Value, e.Reason)
		case c.Op == OpRemove:
			ptr.Load().Remove(e.Kind, e.Platform, e.Value)
		case c.Op == OpReload:
			last := lastReload[0]
			if e.List == Whitelist {
				last = lastReload[1]
			}
			if i+1 < last {
				l.log.Debug("list reload skipped: a later one follows", "rev", c.Rev, "list", e.List)
				break
			}
			start := time.Now()
			s, err := l.build(ctx, e.List)
			if err != nil {
				return fmt.Errorf("reload at rev %d: %w", c.Rev, err)
			}
			ptr.Store(s)
			l.log.Info("list reloaded", "list", e.List, "entries", s.Len(), "rev", c.Rev,
				"duration", time.Since(start).Round(time.Millisecond))
		default:
			l.log.Warn("list change ignored: unknown op", "rev", c.Rev, "list", e.List, "op", c.Op)
		}
		l.rev.Store(c.Rev)
	}
	return nil
}

// Filter decides whether a recipient is ruled out, and by which list:
//
//   - The blacklist always wins: the recipient is blocked if its user id
//     (when not empty) is on the blacklist, or else its (platform, token);
//     reason is the reason of that entry.
//   - Otherwise, when test is set (a test campaign, or an instance in
//     whitelist-only mode), the recipient passes only if its user id or its
//     (platform, token) is on the whitelist; if neither is, it is blocked
//     by the whitelist with reason ReasonNotWhitelisted.
//   - Otherwise it passes: list and reason are empty, blocked is false.
//
// Filter does not allocate; it takes no lock.
func (l *Lists) Filter(platform, token, userID string, test bool) (list Name, reason string, blocked bool) {
	black := l.black.Load()
	if userID != "" {
		if r, ok := black.Lookup(User, "", userID); ok {
			return Blacklist, r, true
		}
	}
	if token != "" {
		if r, ok := black.Lookup(Token, platform, token); ok {
			return Blacklist, r, true
		}
	}
	if !test {
		return "", "", false
	}
	white := l.white.Load()
	if userID != "" {
		if _, ok := white.Lookup(User, "", userID); ok {
			return "", "", false
		}
	}
	if token != "" {
		if _, ok := white.Lookup(Token, platform, token); ok {
			return "", "", false
		}
	}
	return Whitelist, ReasonNotWhitelisted, true
}
