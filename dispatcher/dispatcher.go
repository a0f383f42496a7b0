// Package dispatcher is the domain core of pushd: the batch contract
// (pushd.batch/v1), campaigns and their control (rate, pause, resume,
// cancel), throttling at three levels, and the Dispatcher that turns
// deliveries into sends, retries and dead letters and acknowledges each
// delivery once every recipient in it is resolved.
//
// It knows nothing of AMQP, HTTP, SQL or Prometheus: queue, push/*, store and
// metrics adapt those to the small interfaces declared here, and cmd/pushd
// wires them together.
package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/ratelimit"
)

// Lane is the priority lane a batch travels on.
type Lane uint8

// Lanes. The high lane (routing key batch.high) is for transactional pushes
// and is always served first.
const (
	Normal Lane = iota
	High
)

// String returns "normal" or "high".
func (l Lane) String() string {
	if l == High {
		return "high"
	}
	return "normal"
}

// Delivery is one message taken from a queue, as the dispatcher sees it.
type Delivery interface {
	// Body is the message body, a pushd.batch/v1 document.
	Body() []byte
	// Lane is the lane the message was consumed from (campaign queues
	// count as the normal lane).
	Lane() Lane
	// MessageID is the AMQP message id (the producer's batch id), if any.
	MessageID() string
	// Attempt is the number of send passes the batch already had: 0 for a
	// producer's message, n for the n-th retry of its failed recipients.
	Attempt() int
	// Key is the ledger key pushd gave a message it published (see Hop);
	// empty for a producer's message.
	Key() string
	// HoldUntil is when pushd asked for the message back (delayed retries
	// and not_before holds); zero for a producer's message.
	HoldUntil() time.Time
	// Republished reports whether pushd itself published this message (a
	// retry, a hold, a batch routed to its campaign queue), so it is not
	// counted as received again.
	Republished() bool
	// Ack acknowledges the message; the broker forgets it.
	Ack() error
	// Requeue hands the message back to the broker whole, for when no
	// better hand-off is possible.
	Requeue() error
	// Lost is closed when the delivery can no longer be acknowledged (its
	// channel is gone); the broker will deliver it again.
	Lost() <-chan struct{}
}

// Hop is what pushd carries along with a batch message it publishes.
type Hop struct {
	// Attempt is the number of send passes the recipients already had.
	Attempt int
	// Key is the message's ledger key; empty: a hash of the body. A
	// message forwarded unchanged keeps its key; the remainders and retries
	// split off a run get keys derived from the run's (childKey), so that
	// they are told apart from earlier messages with the same body.
	Key string
}

// hopOf returns the hop of a delivery forwarded unchanged.
func hopOf(del Delivery) Hop { return Hop{Attempt: del.Attempt(), Key: del.Key()} }

// Outbox publishes durably back to the broker: each call returns only once
// the broker has confirmed the message.
type Outbox interface {
	// Hold publishes a batch body to a lane. It is delivered again no
	// earlier than at (zero: at once), carrying h.
	Hold(ctx context.Context, lane Lane, body []byte, h Hop, at time.Time) error
	// DeadLetter publishes a body to the dead-letter queue with the reason.
	DeadLetter(ctx context.Context, body []byte, why DeadLetter) error
}

// CampaignQueues gives each campaign a queue of its own. The lanes feed
// them; a campaign's queue is consumed only while the campaign runs (or is
// being cancelled), with a small prefetch, so a slow or paused campaign
// never holds the lanes.
type CampaignQueues interface {
	// Route publishes a batch body to the campaign's queue (creating it
	// when needed), confirmed.
	Route(ctx context.Context, campaign string, body []byte, h Hop) error
	// ConsumeCampaign consumes the campaign's queue until ctx ends,
	// calling h for each delivery. Deliveries that arrive after ctx ended
	// are passed to h too, with ctx done, so that h can put them back.
	ConsumeCampaign(ctx context.Context, campaign string, h func(context.Context, Delivery)) error
	// DeleteCampaignQueue deletes the campaign's queue if it is empty and
	// reports whether it is gone.
	DeleteCampaignQueue(ctx context.Context, campaign string) (bool, error)
	// Instances returns the number of pushd instances consuming.
	Instances(ctx context.Context) (int, error)
}

// EventPublisher publishes events for producers (token.invalid,
// campaign.finished), confirmed.
type EventPublisher interface {
	PublishEvent(ctx context.Context, key string, body []byte) error
	// PublishEvents publishes several events with one routing key,
	// pipelined.
	PublishEvents(ctx context.Context, key string, bodies [][]byte) error
}

// Filter rules recipients out by the blacklist (always) and the whitelist
// (when test is set). The lists package implements it.
type Filter interface {
	Filter(platform, token, userID string, test bool) (list lists.Name, reason string, blocked bool)
}

// Ledger remembers, for each batch message (see messageKey), which of its
// recipients are resolved: sent, failed for good, filtered, or handed on
// durably. A redelivered message, or a second copy of one, skips them. The
// store implements it.
type Ledger interface {
	// LedgerEntry returns the entry recorded for key, the zero entry when
	// none.
	LedgerEntry(ctx context.Context, key string) (LedgerEntry, error)
	// RecordLedger stores the entries of several messages.
	RecordLedger(ctx context.Context, entries map[string]LedgerEntry) error
}

// LedgerEntry is what the ledger holds for a message. Bit i of a bitmap
// (byte i/8, bit i%8) stands for recipient i.
type LedgerEntry struct {
	// Resolved marks the recipients this message needs do nothing more
	// for.
	Resolved []byte
	// Rest and Retry mark, once its run is over, the recipients handed on
	// to the campaign's queue and to their next attempt. They are written
	// before those hand-offs are published: the message delivered again
	// (a crash before its ack) publishes the same hand-offs again, which
	// the ledger then drops as copies, instead of sending them itself.
	Rest, Retry []byte
}

// handedOff reports whether e records hand-offs.
func (e LedgerEntry) handedOff() bool { return len(e.Rest) > 0 || len(e.Retry) > 0 }

// Blacklister adds entries to the blacklist, for tokens providers reported
// invalid.
type Blacklister interface {
	AddListEntries(ctx context.Context, entries []lists.Entry) (added int, err error)
}

// DeadLetter says why a message or recipients were dead-lettered; the queue
// adapter writes it into message headers.
type DeadLetter struct {
	// MessageID identifies the message (the batch id) in the dead-letter
	// queue.
	MessageID string
	// Reason is a short code: malformed, schema, too_large,
	// payload_too_large, render_failed, retries_exhausted.
	Reason string
	// Detail is a human-readable explanation.
	Detail string
	// Attempts is the number of send attempts made, for retries_exhausted.
	Attempts int
	// Provider, Status and ProviderReason describe the last provider
	// answer, for retries_exhausted.
	Provider       string
	Status         int
	ProviderReason string
}

// Throttling levels, as metric labels.
const (
	LevelGlobal   = "global"
	LevelCampaign = "campaign"
)

// Metrics receives what the dispatcher does. Implementations must be cheap
// and allocation-free: methods are called per recipient.
type Metrics interface {
	// BatchReceived counts a producer's batch and its recipients.
	BatchReceived(l Lane, recipients int)
	// BatchDeadLettered counts a batch sent to the dead-letter queue.
	BatchDeadLettered(reason string)
	// RecipientsDropped counts recipients not sent for reason
	// (malformed_token, unknown_platform, expired).
	RecipientsDropped(reason string, n int)
	// RecipientsCancelled counts recipients not sent because their
	// campaign was cancelled.
	RecipientsCancelled(n int)
	// RecipientsDeadLettered counts recipients dead-lettered after their
	// last attempt.
	RecipientsDeadLettered(p Platform, n int)
	// SendDone records one send attempt, its outcome and duration.
	SendDone(p Platform, o Outcome, d time.Duration)
	// CredentialFault counts a send refused because of pushd's own
	// credentials.
	CredentialFault(p Platform)
	// InFlight adds delta to the recipients being processed.
	InFlight(delta int)
	// ThrottleWait records the time a recipient waited for a token of a
	// level: "global", "campaign", or a provider ("apns", "fcm").
	ThrottleWait(level string, d time.Duration)
	// RateLimit reports a level's current rate for this instance (0: no
	// limit).
	RateLimit(level string, perSecond float64)
	// Campaigns reports how many campaigns this instance tracks by status.
	Campaigns(byStatus map[Status]int)
	// RecipientsFiltered counts recipients ruled out by a list, by the
	// reason of the entry (not_whitelisted for the whitelist).
	RecipientsFiltered(list, reason string, n int)
	// InvalidTokens counts tokens reported invalid by a provider.
	InvalidTokens(p Platform, n int)
	// LedgerSkipped counts recipients of a redelivered or duplicated
	// message skipped because the ledger had them resolved.
	LedgerSkipped(n int)
}

// Limits are the rates of the global and provider token buckets, for the
// whole cluster (each of n instances takes 1/n). 0 means no limit; a burst
// of 0 takes ratelimit.DefaultBurst.
type Limits struct {
	GlobalPerSecond   float64
	GlobalBurst       int
	ProviderPerSecond [numPlatforms]float64
	ProviderBurst     [numPlatforms]int
}

// Config tunes a Dispatcher. Zero fields take the defaults given.
type Config struct {
	// Workers is the number of concurrent sends per platform (default 256
	// for iOS, 128 for Android). It bounds the HTTP/2 streams in flight.
	Workers [numPlatforms]int
	// MaxAttempts is how many times a recipient is tried before it goes to
	// the dead-letter queue (default 5).
	MaxAttempts int
	// RetryBase and RetryMax bound the exponential backoff between
	// attempts (defaults 1s and 5m); a provider's Retry-After wins when
	// longer.
	RetryBase time.Duration
	RetryMax  time.Duration
	// Limits are the global and provider rates.
	Limits Limits
	// MaxHold is the longest a delivery is kept unacknowledged while its
	// campaign's rate holds it back (default 10m, well under RabbitMQ's
	// 30-minute consumer timeout); then its unsent recipients go back to
	// the campaign's queue.
	MaxHold time.Duration
	// CampaignIdle is how long a campaign has nothing queued, held or in
	// flight before it is finished and its queue deleted (default 30s).
	CampaignIdle time.Duration
	// SyncInterval is how often campaign changes made by other instances
	// are read from the store and counters written to it (default 1s).
	SyncInterval time.Duration
	// HandBackTimeout bounds publishing the unsent remainders at hard stop
	// (default 5s).
	HandBackTimeout time.Duration
	// LedgerFlush is how often the ledger records the progress of the
	// batches being sent (default 20ms). It bounds the duplicates after a
	// crash: sends in flight plus those of the last LedgerFlush.
	LedgerFlush time.Duration
	// WhitelistOnly sends every campaign only to whitelisted recipients, as
	// if each were a test campaign (a staging setting).
	WhitelistOnly bool
	// Clock is the time source (default the system clock).
	Clock ratelimit.Clock
}

func (c *Config) setDefaults() {
	if c.Workers[IOS] <= 0 {
		c.Workers[IOS] = 256
	}
	if c.Workers[Android] <= 0 {
		c.Workers[Android] = 128
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.MaxHold <= 0 {
		c.MaxHold = 10 * time.Minute
	}
	if c.CampaignIdle <= 0 {
		c.CampaignIdle = 30 * time.Second
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = time.Second
	}
	if c.HandBackTimeout <= 0 {
		c.HandBackTimeout = 5 * time.Second
	}
	if c.LedgerFlush <= 0 {
		c.LedgerFlush = 20 * time.Millisecond
	}
	if c.Clock == nil {
		c.Clock = ratelimit.SystemClock()
	}
}

// Deps are the collaborators of a Dispatcher.
type Deps struct {
	Logger  *slog.Logger
	Metrics Metrics
	Outbox  Outbox
	Queues  CampaignQueues
	Store   CampaignStore
	Events  EventPublisher
	// Filter applies the lists; nil: no filtering.
	Filter Filter
	// Blacklist receives tokens reported invalid; nil: they are only
	// reported as events.
	Blacklist Blacklister
	// Ledger records resolved recipients; nil: no deduplication.
	Ledger Ledger
	// Limits keeps the operators' settings of the global and provider
	// buckets; nil: SetLimit applies to this instance until it stops.
	Limits LimitStore
	// Providers send per platform; a platform without one has its
	// recipients dropped as unknown_platform.
	Providers map[Platform]Provider
}

// Dispatcher consumes deliveries, routes each batch through its campaign's
// queue, sends recipients through bounded pools of workers per platform
// under three levels of token buckets, and resolves each delivery exactly
// once: ack, hand back, or leave to the broker when its channel is lost.
type Dispatcher struct {
	cfg       Config
	log       *slog.Logger
	met       Metrics
	out       Outbox
	queues    CampaignQueues
	store     CampaignStore
	events    EventPublisher
	filter    Filter
	blacklist Blacklister
	ledger    Ledger
	limits    LimitStore
	providers [numPlatforms]Provider

	limMu     sync.Mutex
	overrides map[string]LimitSetting // operators' settings by level

	global    *ratelimit.Bucket
	perPlat   [numPlatforms]*ratelimit.Bucket
	instances atomic.Int64

	// jobs[p][lane] feed the workers of platform p; workers take the high
	// lane first.
	jobs     [numPlatforms][2]chan job
	finished chan *run

	started chan struct{}   // closed by Run once the contexts are set
	runCtx  context.Context // Run's context; it ends at the hard stop
	// consumeCtx ends when consuming stops (StopConsuming or hard stop):
	// campaign consumers end and runs stop submitting.
	consumeCtx  context.Context
	stopConsume context.CancelFunc
	consumers   sync.WaitGroup // campaign queue consumers

	campaigns registry

	// handling is held shared by each Handle call and exclusively by the
	// hand-back, so that the hand-back never races a submission.
	handling sync.RWMutex

	mu     sync.Mutex
	active map[*run]struct{}
	keys   map[string]*run // active runs by message key
	idle   chan struct{}   // closed and replaced when active becomes empty

	dirtyMu  sync.Mutex
	dirty    map[*run]struct{} // runs whose ledger bitmap changed since the last flush
	ledgerMu sync.Mutex        // orders the ledger writes of flushes and finishing runs

	signals testSignals
}

// job is one recipient of one run, small enough to pass by value.
type job struct {
	r *run
	i int32
}

// New returns a Dispatcher. Run starts it.
func New(cfg Config, deps Deps) *Dispatcher {
	cfg.setDefaults()
	d := &Dispatcher{
		cfg:       cfg,
		log:       deps.Logger,
		met:       deps.Metrics,
		out:       deps.Outbox,
		queues:    deps.Queues,
		store:     deps.Store,
		events:    deps.Events,
		filter:    deps.Filter,
		blacklist: deps.Blacklist,
		ledger:    deps.Ledger,
		limits:    deps.Limits,
		keys:      make(map[string]*run),
		dirty:     make(map[*run]struct{}),
		finished:  make(chan *run, 64),
		started:   make(chan struct{}),
		active:    make(map[*run]struct{}),
		idle:      make(chan struct{}),
	}
	d.campaigns.byID = make(map[string]*campaign)
	d.instances.Store(1)
	for p, prov := range deps.Providers {
		if p > PlatformUnknown && p < numPlatforms {
			d.providers[p] = prov
		}
	}
	lim := cfg.Limits
	d.global = ratelimit.NewBucket(lim.GlobalPerSecond, lim.GlobalBurst, cfg.Clock)
	for _, p := range Platforms {
		d.perPlat[p] = ratelimit.NewBucket(lim.ProviderPerSecond[p], lim.ProviderBurst[p], cfg.Clock)
		for l := range d.jobs[p] {
			d.jobs[p][l] = make(chan job, cfg.Workers[p])
		}
	}
	d.reportLimits()
	return d
}

func (d *Dispatcher) now() time.Time { return d.cfg.Clock.Now() }

// finishers is the number of goroutines that publish retries and ack
// finished deliveries, so a slow broker round trip never holds a sender.
const finishers = 4

// Run runs the dispatcher until ctx ends (the hard stop): it loads the
// campaigns from the store, starts the workers, the campaign consumers and
// the bookkeeping loop. At the hard stop it hands back every delivery not
// yet resolved: unsent recipients go back to their campaign's queue and the
// delivery is acked (or, if that fails, requeued whole). Call StopConsuming
// and Drain first for a graceful stop.
func (d *Dispatcher) Run(ctx context.Context) error {
	select {
	case <-d.started:
		return errors.New("dispatcher: Run called twice")
	default:
	}
	d.runCtx = ctx
	d.consumeCtx, d.stopConsume = context.WithCancel(ctx)
	bookTick := newTicker(d.cfg.Clock, d.cfg.SyncInterval)
	var flushTick *ticker
	if d.ledger != nil {
		flushTick = newTicker(d.cfg.Clock, d.cfg.LedgerFlush)
	}
	close(d.started)

	if err := d.loadCampaigns(ctx); err != nil {
		return err
	}
	d.syncLimits(ctx)
	var wg sync.WaitGroup
	for _, p := range Platforms {
		for range d.cfg.Workers[p] {
			wg.Go(func() { d.work(ctx, p) })
		}
	}
	var fwg sync.WaitGroup
	for range finishers {
		fwg.Go(func() { d.finishLoop(ctx) })
	}
	var bwg sync.WaitGroup
	bwg.Go(func() { d.bookkeeping(ctx, bookTick) })
	if flushTick != nil {
		bwg.Go(func() { d.flushLedger(ctx, flushTick) })
	}

	<-ctx.Done()
	d.StopConsuming(context.Background())
	wg.Wait()
	fwg.Wait()
	bwg.Wait()
	d.handling.Lock()
	d.handBack()
	d.handling.Unlock()
	d.flushCounters(context.Background())
	return nil
}

// StopConsuming stops the campaign consumers and makes runs stop submitting
// (their unsent recipients go back to their campaign's queue once their
// sends in flight are resolved). It waits for the consumers to return, or
// for ctx. Stopping twice, or before Run, is harmless.
func (d *Dispatcher) StopConsuming(ctx context.Context) {
	select {
	case <-d.started:
	default:
		return
	}
	d.campaigns.mu.Lock()
	d.campaigns.stopping = true
	d.campaigns.mu.Unlock()
	d.stopConsume()
	done := make(chan struct{})
	go func() {
		d.consumers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Drain waits until every delivery handed to the dispatcher is resolved, or
// ctx ends. It reports whether all were resolved.
func (d *Dispatcher) Drain(ctx context.Context) bool {
	for {
		d.mu.Lock()
		n, idle := len(d.active), d.idle
		d.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return false
		}
	}
}

// track records an active run. It reports false, tracking nothing, when a
// run of an identical message (same key) is active.
func (d *Dispatcher) track(r *run) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.keys[r.key] != nil {
		return false
	}
	d.keys[r.key] = r
	d.active[r] = struct{}{}
	return true
}

func (d *Dispatcher) untrack(r *run) {
	r.c.active.Add(-1)
	r.c.touch(d.now())
	d.mu.Lock()
	delete(d.active, r)
	delete(d.keys, r.key)
	if len(d.active) == 0 {
		close(d.idle)
		d.idle = make(chan struct{})
	}
	d.mu.Unlock()
	close(r.untracked)
}

func (d *Dispatcher) requeueDelivery(del Delivery) {
	if err := del.Requeue(); err != nil {
		d.log.Debug("requeue failed; the broker will redeliver", "err", err)
	}
}

func (d *Dispatcher) ack(del Delivery) {
	if err := del.Ack(); err != nil {
		d.log.Debug("ack failed; the broker will redeliver", "err", err)
	}
}

// reportLimits publishes the global and provider rates as metrics.
func (d *Dispatcher) reportLimits() {
	r, _ := d.global.Limit()
	d.met.RateLimit(LevelGlobal, r)
	for _, p := range Platforms {
		r, _ := d.perPlat[p].Limit()
		d.met.RateLimit(p.Provider(), r)
	}
}

// share divides a cluster-wide rate among the instances.
func (d *Dispatcher) share(perSecond float64) float64 {
	if perSecond <= 0 {
		return 0
	}
	return perSecond / float64(max(1, d.instances.Load()))
}

// setInstances applies a new instance count to every bucket.
func (d *Dispatcher) setInstances(n int) {
	if n < 1 {
		n = 1
	}
	if d.instances.Swap(int64(n)) == int64(n) {
		return
	}
	d.log.Info("instances consuming changed; rates rescaled", "instances", n)
	d.applyLimits()
	for _, c := range d.campaigns.all() {
		c.applyRate(d)
	}
}
