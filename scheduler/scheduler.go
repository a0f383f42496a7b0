package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testsignal"
	"github.com/pushd/pushd/ratelimit"
)

// Config configures a Scheduler. Zero fields take the defaults given.
type Config struct {
	// Store holds the campaigns, their leases and cursors, and the
	// audiences. Required.
	Store Store
	// Publisher publishes batches with confirms (queue.Broker). Required.
	Publisher Publisher
	// Owner names this instance in the leases it takes; unique per
	// running pushd (host name and process id, say). Required.
	Owner string
	// LeaseFor is how long a claim lasts without being renewed (default
	// 30s): how soon another instance takes over a campaign whose
	// instance died. Every stored chunk renews it, and so does every
	// retry of a failed publish.
	LeaseFor time.Duration
	// MaxLate is how late a campaign may still start (default 1h,
	// scheduler.max_late); later than that it becomes missed.
	MaxLate time.Duration
	// BatchSize is the most recipients per batch (default and at most
	// 1000, dispatcher.MaxRecipients).
	BatchSize int
	// PollInterval is the longest the scheduler sleeps between claims
	// (default 1s): campaigns scheduled by another instance, and leases
	// expired, are seen within it.
	PollInterval time.Duration
	// Concurrency is how many campaigns this instance publishes at once
	// (default 4). Due campaigns beyond it wait in the store for a free
	// slot (here or on another instance).
	Concurrency int
	// RetryMin and RetryMax bound the backoff between attempts to publish
	// a batch, or to store progress, that failed (defaults 100ms and 5s;
	// RetryMax is at most LeaseFor/3 so that the lease outlives the
	// wait).
	RetryMin time.Duration
	RetryMax time.Duration
	// Clock is the time source (default the system clock).
	Clock ratelimit.Clock
	// Metrics receives what the scheduler does (default: none).
	Metrics Metrics
	// Logger receives the scheduler's logs (default: discarded).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.LeaseFor == 0 {
		c.LeaseFor = 30 * time.Second
	}
	if c.MaxLate == 0 {
		c.MaxLate = time.Hour
	}
	if c.BatchSize == 0 {
		c.BatchSize = dispatcher.MaxRecipients
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	c.RetryMax = max(min(c.RetryMax, c.LeaseFor/3), c.RetryMin)
	if c.Clock == nil {
		c.Clock = ratelimit.SystemClock()
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

func (c *Config) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("scheduler: no store")
	case c.Publisher == nil:
		return errors.New("scheduler: no publisher")
	case c.Owner == "":
		return errors.New("scheduler: no owner (instance id)")
	case c.LeaseFor < 0:
		return fmt.Errorf("scheduler.lease: %v is negative", c.LeaseFor)
	case c.MaxLate < 0:
		return fmt.Errorf("scheduler.max_late: %v is negative", c.MaxLate)
	case c.BatchSize < 0 || c.BatchSize > dispatcher.MaxRecipients:
		return fmt.Errorf("scheduler.batch_size: %d is not within 1 to %d", c.BatchSize, dispatcher.MaxRecipients)
	case c.PollInterval < 0:
		return fmt.Errorf("scheduler.poll_interval: %v is negative", c.PollInterval)
	case c.Concurrency < 0:
		return fmt.Errorf("scheduler.concurrency: %d is negative", c.Concurrency)
	case c.RetryMin < 0 || c.RetryMax < 0:
		return errors.New("scheduler: negative retry backoff")
	}
	return nil
}

// Metrics receives what the scheduler does; metrics.Scheduler implements
// it.
type Metrics interface {
	// Due adds delta to the campaigns claimed and still publishing.
	Due(delta int)
	// Started counts a campaign claimed for publishing, lateness after
	// its fire_at; resumed is true when it was taken over with a cursor
	// (its lateness is then the dead instance's, not the schedule's).
	Started(lateness time.Duration, resumed bool)
	// Missed counts campaigns marked missed.
	Missed(n int)
	// Published counts recipients in confirmed batches.
	Published(recipients int)
	// PublishFailed counts a failed publish.
	PublishFailed()
}

type nopMetrics struct{}

func (nopMetrics) Due(int)                     {}
func (nopMetrics) Started(time.Duration, bool) {}
func (nopMetrics) Missed(int)                  {}
func (nopMetrics) Published(int)               {}
func (nopMetrics) PublishFailed()              {}

// Scheduler fires console campaigns at their time and publishes their
// audiences as pushd.batch/v1 batches. See the package documentation.
type Scheduler struct {
	cfg   Config
	store Store
	pub   Publisher
	clock ratelimit.Clock
	met   Metrics
	log   *slog.Logger

	wake chan struct{}

	mu     sync.Mutex
	active map[string]bool // campaigns being published here
	wg     sync.WaitGroup

	signals testSignals
}

// testSignals are raised at known points so that tests order events on
// them instead of sleeping; they are inert unless a test calls init.
type testSignals struct {
	// sleeping: Run is done with a pass (claim, next fire) and waits.
	sleeping testsignal.Signal[sleep]
	// backoff: a campaign armed a backoff timer for the value.
	backoff testsignal.Signal[time.Duration]
	// ended: a campaign's publishing ended.
	ended testsignal.Signal[ended]
}

// sleep is a wait of Run: the time of the claim before it, and how long
// it is.
type sleep struct {
	At time.Time
	D  time.Duration
}

// ended says how a campaign's publishing ended: "done", "lease_lost",
// "stopped" (shutdown) or "failed".
type ended struct {
	ID, How string
}

func (s *testSignals) init() {
	s.sleeping.Init()
	s.backoff.Init()
	s.ended.Init()
}

// New checks cfg and returns a Scheduler; Run starts it.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Scheduler{
		cfg: cfg, store: cfg.Store, pub: cfg.Publisher, clock: cfg.Clock, met: cfg.Metrics,
		log:    cfg.Logger,
		wake:   make(chan struct{}, 1),
		active: map[string]bool{},
	}, nil
}

// Wake makes Run look for due campaigns now rather than at its next
// timer: the admin API calls it after scheduling a campaign, so that one
// due in 0.3s is not kept waiting for a whole poll. It never blocks.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run claims due campaigns and publishes them until ctx ends, then stops
// the publishing in progress, hands its leases back and returns nil once
// every goroutine it started has returned.
//
// It sleeps until the earlier of the next scheduled fire_at and
// PollInterval, or until Wake, and at each wake claims as many campaigns
// as it has free slots; each claimed campaign is published in a goroutine
// of its own.
func (s *Scheduler) Run(ctx context.Context) error {
	defer s.wg.Wait()
	claimFailing := false
	for {
		now := s.clock.Now()
		if err := s.claim(ctx, now); err != nil && ctx.Err() == nil {
			if !claimFailing {
				s.log.Error("cannot claim due campaigns; retrying each poll", "err", err)
			}
			claimFailing = true
		} else if err == nil && claimFailing {
			s.log.Info("claiming due campaigns again")
			claimFailing = false
		}
		d := s.sleepFor(ctx)
		t := s.clock.NewTimer(d)
		s.signals.sleeping.Signal(sleep{now, d})
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.wake:
			t.Stop()
		case <-t.C():
		}
	}
}

// sleepFor returns how long Run may sleep: PollInterval, or less when the
// next scheduled campaign is due sooner. While every slot is busy the
// next fire_at does not matter: a campaign ending wakes Run.
func (s *Scheduler) sleepFor(ctx context.Context) time.Duration {
	d := s.cfg.PollInterval
	if s.free() == 0 {
		return d
	}
	next, ok, err := s.store.NextFire(ctx)
	if err != nil || !ok {
		return d
	}
	// A fire_at already passed (claimed meanwhile by another instance, or
	// scheduled just now) waits for the poll or a Wake, never a busy loop.
	if wait := next.Sub(s.clock.Now()); wait > 0 && wait < d {
		d = wait
	}
	return d
}

func (s *Scheduler) free() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Concurrency - len(s.active)
}

// claim takes the due campaigns the free slots allow and starts
// publishing each; it logs and counts the missed ones.
func (s *Scheduler) claim(ctx context.Context, now time.Time) error {
	free := s.free()
	if free <= 0 {
		return nil
	}
	due, missed, err := s.store.Claim(ctx, s.cfg.Owner, now, s.cfg.LeaseFor, s.cfg.MaxLate, free)
	if err != nil {
		return err
	}
	for _, id := range missed {
		s.log.Warn("campaign missed: its time passed more than max_late ago while no pushd ran; it is not sent and can be rescheduled",
			"campaign_id", id, "max_late", s.cfg.MaxLate)
	}
	if len(missed) > 0 {
		s.met.Missed(len(missed))
	}
	for _, c := range due {
		// This instance's own lease ran out while it kept publishing
		// (renewals failed) and the store handed the campaign back to
		// it: the goroutine publishing it goes on, and its next
		// Progress renews the lease.
		s.mu.Lock()
		again := s.active[c.ID]
		s.active[c.ID] = true
		s.mu.Unlock()
		if again {
			s.log.Warn("claimed a campaign this instance is publishing already; its lease had run out", "campaign_id", c.ID)
			continue
		}
		resumed := c.Published > 0 || c.Cursor != (Cursor{})
		late := now.Sub(c.FireAt)
		s.met.Started(late, resumed)
		s.met.Due(1)
		if resumed {
			s.log.Info("resuming campaign where it stopped", "campaign_id", c.ID,
				"published", c.Published, "cursor_zone", c.Cursor.Zone, "cursor_pos", c.Cursor.Pos)
		} else {
			s.log.Info("campaign due: publishing", "campaign_id", c.ID, "fire_at", c.FireAt, "late", late)
		}
		s.wg.Go(func() {
			how := s.publishCampaign(ctx, c)
			s.mu.Lock()
			delete(s.active, c.ID)
			s.mu.Unlock()
			s.met.Due(-1)
			s.Wake() // a slot is free
			s.signals.ended.Signal(ended{c.ID, how})
		})
	}
	return nil
}

// errPermanent marks a campaign that cannot be published as it stands (a
// notification that breaks pushd.batch/v1, a recipient too large for any
// message): retrying would fail the same way.
var errPermanent = errors.New("cannot be published")

// campaignRun is the publishing of one claimed campaign, by one goroutine.
type campaignRun struct {
	s         *Scheduler
	c         Campaign
	b         *builder
	cursor    Cursor
	published int64
	notBefore map[string]*time.Time // by recipient zone
}

// publishCampaign streams the campaign's audience from its cursor and
// publishes it chunk by chunk, then marks it published. It returns how it
// ended (see ended).
func (s *Scheduler) publishCampaign(ctx context.Context, c Campaign) string {
	r := &campaignRun{
		s: s, c: c, cursor: c.Cursor, published: c.Published,
		b:         newBuilder(dispatcher.Campaign{ID: c.ID, RatePerSecond: c.RatePerSecond}, c.Notification),
		notBefore: map[string]*time.Time{},
	}
	log := s.log.With("campaign_id", c.ID)
	err := r.run(ctx)
	switch {
	case err == nil:
		log.Info("campaign published", "recipients", r.published)
		return "done"
	case errors.Is(err, ErrLeaseLost):
		log.Info("stopped publishing: the campaign was cancelled or another instance took it over", "published", r.published)
		return "lease_lost"
	case ctx.Err() != nil:
		r.handBack(ctx)
		return "stopped"
	default:
		s.met.PublishFailed()
		log.Error("cannot publish the campaign; it is retried when its lease expires", "err", err, "published", r.published)
		return "failed"
	}
}

// run publishes from the cursor to the end. A store that cannot be read
// is retried from the cursor reached; publish and progress failures are
// retried inside chunk.
func (r *campaignRun) run(ctx context.Context) error {
	s := r.s
	wait := s.cfg.RetryMin
	for {
		var stop error // why chunk stopped the stream, however Recipients wraps it
		err := s.store.Recipients(ctx, r.c.AudienceID, r.c.RecipientTimeZone, r.cursor, s.cfg.BatchSize, func(rs []Recipient) error {
			stop = r.chunk(ctx, rs)
			return stop
		})
		if stop != nil {
			return stop
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
		s.log.Warn("cannot read the audience; retrying from the cursor", "campaign_id", r.c.ID, "err", err, "retry_in", wait)
		if err := r.pause(ctx, wait); err != nil {
			return err
		}
		wait = min(wait*2, s.cfg.RetryMax)
	}
	return r.progress(ctx, true)
}

// chunk publishes one chunk of the stream, as one batch, or as several
// when its recipients do not fit one message; once the broker confirmed
// them all it stores the cursor at the chunk's last recipient. The cursor
// only ever stands at a chunk end, so that a resume streams the same
// chunks again and rebuilds byte-identical batches (the dispatcher's
// ledger knows a producer's message by a hash of its body).
func (r *campaignRun) chunk(ctx context.Context, rs []Recipient) error {
	if len(rs) == 0 {
		return nil
	}
	nb, err := r.notBeforeOf(rs[0])
	if err != nil {
		return err
	}
	for rest := rs; len(rest) > 0; {
		id := fmt.Sprintf("%s/%010d", r.c.ID, rest[0].Pos)
		body, n, err := r.b.build(id, rest, nb)
		if err != nil {
			return err
		}
		if err := r.publish(ctx, id, body); err != nil {
			return err
		}
		r.s.met.Published(n)
		r.s.log.Debug("batch published", "campaign_id", r.c.ID, "batch_id", id, "recipients", n)
		rest = rest[n:]
	}
	last := rs[len(rs)-1]
	r.cursor = Cursor{Pos: last.Pos}
	if r.c.RecipientTimeZone {
		r.cursor.Zone = last.TimeZone
	}
	r.published += int64(len(rs))
	return r.progress(ctx, false)
}

// notBeforeOf returns the not_before of a recipient_time_zone campaign's
// chunk whose first recipient is first (chunks never mix zones): send_at's
// wall time in its zone. It is set even once that time has passed (the
// dispatcher then sends at once): a batch published again after a crash
// must be the same bytes as the first time.
func (r *campaignRun) notBeforeOf(first Recipient) (*time.Time, error) {
	if !r.c.RecipientTimeZone {
		return nil, nil
	}
	at, ok := r.notBefore[first.TimeZone]
	if !ok {
		t, set, err := NotBefore(r.c.SendAt, r.c.TimeZone, first.TimeZone)
		if err != nil {
			return nil, fmt.Errorf("%w: not_before of zone %q: %v", errPermanent, first.TimeZone, err)
		}
		if set {
			at = &t
		}
		r.notBefore[first.TimeZone] = at
	}
	return at, nil
}

// publish publishes one batch until the broker confirms it, retrying the
// same batch with backoff, and renewing the lease, for as long as it
// fails: a batch is never skipped. Each attempt is bounded by a third of
// the lease, so that a broker that does not answer cannot let the lease
// run out unrenewed.
func (r *campaignRun) publish(ctx context.Context, id string, body []byte) error {
	s := r.s
	wait := s.cfg.RetryMin
	for {
		pctx, cancel := s.withTimeout(ctx, s.cfg.LeaseFor/3)
		err := s.pub.PublishBatch(pctx, dispatcher.Normal, id, body)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.met.PublishFailed()
		s.log.Warn("cannot publish a batch; retrying it", "campaign_id", r.c.ID, "batch_id", id, "err", err, "retry_in", wait)
		if err := r.pause(ctx, wait); err != nil {
			return err
		}
		wait = min(wait*2, s.cfg.RetryMax)
	}
}

// progress stores the cursor and the published count and renews the
// lease (with done, marks the campaign published), retrying a store that
// fails until it answers or the lease is lost.
func (r *campaignRun) progress(ctx context.Context, done bool) error {
	s := r.s
	wait := s.cfg.RetryMin
	for {
		err := r.save(ctx, s.clock.Now().Add(s.cfg.LeaseFor), done)
		if err == nil || errors.Is(err, ErrLeaseLost) || ctx.Err() != nil {
			return err
		}
		s.log.Warn("cannot store the campaign's progress; retrying", "campaign_id", r.c.ID, "err", err, "retry_in", wait)
		if err := s.sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(wait*2, s.cfg.RetryMax)
	}
}

func (r *campaignRun) save(ctx context.Context, until time.Time, done bool) error {
	return r.s.store.Progress(ctx, r.c.ID, r.s.cfg.Owner, r.cursor, r.published, until, done)
}

// pause renews the lease, then waits d: the wait of a retry.
func (r *campaignRun) pause(ctx context.Context, d time.Duration) error {
	err := r.save(ctx, r.s.clock.Now().Add(r.s.cfg.LeaseFor), false)
	if errors.Is(err, ErrLeaseLost) || ctx.Err() != nil {
		return err
	}
	if err != nil {
		r.s.log.Warn("cannot renew the campaign's lease", "campaign_id", r.c.ID, "err", err)
	}
	return r.s.sleep(ctx, d)
}

// handBack ends the lease at shutdown, at the cursor reached, so that the
// next instance to claim (this one restarted, or another) resumes at once
// instead of when the lease would have expired.
func (r *campaignRun) handBack(ctx context.Context) {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.save(hctx, r.s.clock.Now(), false); err != nil {
		r.s.log.Warn("stopped publishing; the campaign resumes when its lease expires", "campaign_id", r.c.ID, "err", err, "published", r.published)
		return
	}
	r.s.log.Info("stopped publishing; handed the campaign back", "campaign_id", r.c.ID, "published", r.published)
}

// sleep waits d on the clock, or until ctx ends.
func (s *Scheduler) sleep(ctx context.Context, d time.Duration) error {
	t := s.clock.NewTimer(d)
	s.signals.backoff.Signal(d)
	select {
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-t.C():
		return nil
	}
}

// withTimeout is context.WithTimeout on the scheduler's clock.
func (s *Scheduler) withTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	t := s.clock.NewTimer(d)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-t.C():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		t.Stop()
		cancel()
		<-done
	}
}

// SendTest publishes notification to recipients now, as the test campaign
// testID (campaign.test: the dispatcher sends only to whitelisted
// recipients), on the high lane, in batches of at most BatchSize with ids
// "<testID>/<n>", n counting from 1. It returns how many recipients the
// broker confirmed; on an error, those confirmed before it.
func (s *Scheduler) SendTest(ctx context.Context, testID string, notification json.RawMessage, recipients []Recipient) (devices int, err error) {
	b := newBuilder(dispatcher.Campaign{ID: testID, Test: true}, notification)
	for n := 1; len(recipients) > 0; n++ {
		id := fmt.Sprintf("%s/%d", testID, n)
		body, k, err := b.build(id, recipients[:min(len(recipients), s.cfg.BatchSize)], nil)
		if err != nil {
			return devices, fmt.Errorf("test send %s: %w", testID, err)
		}
		if err := s.pub.PublishBatch(ctx, dispatcher.High, id, body); err != nil {
			s.met.PublishFailed()
			return devices, fmt.Errorf("test send %s: publish batch %s: %w", testID, id, err)
		}
		s.met.Published(k)
		devices += k
		recipients = recipients[k:]
	}
	return devices, nil
}
