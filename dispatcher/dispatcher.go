// Package dispatcher is the domain core of pushd: the batch contract
// (pushd.batch/v1), campaigns and their control (rate, pause, resume,
// cancel), throttling at three levels, and the Dispatcher that turns
// deliveries into sends, retries and dead letters and acknowledges each
// delivery once every recipient in it is resolved.
//
// It imports nothing of AMQP, HTTP, SQL or Prometheus: queue, push/*, store
// and metrics adapt those to the small interfaces declared here, and
// cmd/pushd wires them together. It is written for a broker with
// RabbitMQ's rules, though, and follows them:
//
//   - a delivery is resolved exactly once, by ack or requeue, on the
//     channel it came from; when that channel is gone (Lost) the broker
//     delivers the message again, so nothing more of it is sent;
//   - a requeue counts towards the queue's delivery limit (quorum queues'
//     x-delivery-limit), after which the broker dead-letters the message;
//     so a paused or yielding campaign republishes its batch (a new
//     message) instead of requeueing it, and only failures requeue;
//   - an unacknowledged delivery is taken back after the broker's consumer
//     timeout (30 minutes by default): MaxHold (10 minutes) stays well
//     under it;
//   - a publish counts once the broker confirmed it (publisher confirms);
//     a hand-off is published, confirmed, and only then the delivery
//     acked;
//   - the prefetch of each consumer bounds what is held in memory.
package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
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

// laneKey is the context key of WithLane.
type laneKey struct{}

// WithLane returns ctx marked as working for a batch of lane l. The store
// calls a high-lane batch waits for (before its first send, and its last
// ledger entry before the ack that frees its prefetch slot) carry it, so
// that a store may serve them before the normal lane's writes waiting at
// the time.
func WithLane(ctx context.Context, l Lane) context.Context {
	return context.WithValue(ctx, laneKey{}, l)
}

// LaneOf returns the lane WithLane marked ctx with: Normal when none.
func LaneOf(ctx context.Context) Lane {
	l, _ := ctx.Value(laneKey{}).(Lane)
	return l
}

// Delivery is one message taken from a queue, as the dispatcher sees it:
// what it carries, and the Acker that resolves it.
type Delivery struct {
	// Body is the message body, a pushd.batch/v1 document.
	Body []byte
	// Lane is the lane the message was consumed from (campaign queues
	// count as the normal lane).
	Lane Lane
	// MessageID is the AMQP message id (the producer's batch id), if any.
	MessageID string
	// Republished reports whether pushd itself published this message (a
	// retry, a hold, a batch routed to its campaign queue), so it is not
	// counted as received again; Hop is then what pushd carried along
	// with it, zero for a producer's message.
	Republished bool
	Hop         Hop
	// HoldUntil is when pushd asked for the message back (delayed retries
	// and not_before holds); zero for a producer's message.
	HoldUntil time.Time
	// Acker resolves the delivery.
	Acker Acker
}

// Acker resolves a delivery, exactly once, on the channel it came from.
type Acker interface {
	// Ack acknowledges the message; the broker forgets it.
	Ack() error
	// Requeue hands the message back to the broker whole, for when no
	// better hand-off is possible.
	Requeue() error
	// Lost is closed when the delivery can no longer be resolved (its
	// channel or connection closed before an Ack or Requeue succeeded):
	// the broker will deliver it again. It is never closed after a
	// successful Ack or Requeue.
	Lost() <-chan struct{}
}

// Hop is what pushd carries along with a batch message it publishes.
type Hop struct {
	// Attempt is the number of send passes the recipients already had: 0
	// for a producer's message, n for the n-th retry of its failed
	// recipients.
	Attempt int
	// Key is the message's ledger key; empty: a hash of the body. A
	// message forwarded unchanged keeps its key; the remainders and retries
	// split off a run get keys derived from the run's (childKey), so that
	// they are told apart from earlier messages with the same body.
	Key string
	// Published is when the producer published the batch, when it said
	// (the header timestamp_in_ms, else the AMQP timestamp, which has
	// whole seconds only); the copy pushd routes to the campaign's queue
	// keeps it. It measures enqueue-to-send latency, nothing else.
	Published time.Time
}

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
	// across reconnects, calling h for each delivery. Deliveries that
	// arrive after ctx ended are passed to h too, with ctx done, so that h
	// can put them back.
	ConsumeCampaign(ctx context.Context, campaign string, h func(context.Context, Delivery))
	// DeleteCampaignQueue deletes the campaign's queue if it is empty and
	// reports whether it is gone.
	DeleteCampaignQueue(ctx context.Context, campaign string) (bool, error)
	// Instances returns the number of pushd instances consuming.
	Instances(ctx context.Context) (int, error)
}

// Lanes are where producers' batches arrive: the normal and the high lane.
type Lanes interface {
	// Consume consumes both lanes until ctx ends, across reconnects,
	// calling h for each delivery; when ctx ends it hands the deliveries
	// not yet given to h back to the broker, and returns.
	Consume(ctx context.Context, h func(context.Context, Delivery))
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
//
// The campaign counters of resolved recipients are written with their
// bits, in the same transaction, and a producer's message is counted as
// received when its entry is created: after a crash the counters say
// exactly what the ledger says, and a redelivery or a copy counts nothing
// twice.
type Ledger interface {
	// LedgerEntry returns the entry recorded for key, the zero entry when
	// none.
	LedgerEntry(ctx context.Context, key string) (LedgerEntry, error)
	// RecordLedger stores the entries of several messages and adds
	// counts (by campaign id) to the campaigns' counters, in one
	// transaction.
	RecordLedger(ctx context.Context, entries map[string]LedgerEntry, counts map[string]Counters) error
	// RecordReceived records a message taken from a producer: when the
	// ledger has no entry for key, it creates one whose Resolved is
	// resolved and adds counts to the campaign's counters, in one
	// transaction, and reports true; when it has one, it changes nothing
	// and reports false.
	RecordReceived(ctx context.Context, key, campaign string, resolved []byte, counts Counters) (bool, error)
	// ClaimLedger claims the entry of key for owner until until, unless
	// another owner's claim holds past now, and returns the entry and
	// the claim's holder after the attempt (owner when claimed, creating
	// the entry if there is none). A claim ends at until, or at a
	// RecordLedger of an entry with Release set.
	ClaimLedger(ctx context.Context, key, owner string, now, until time.Time) (e LedgerEntry, holder string, err error)
	// RenewClaims extends owner's claims on keys until until; those it
	// no longer holds are left alone.
	RenewClaims(ctx context.Context, owner string, keys []string, until time.Time) error
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
	// Release, on a write, ends the message's claim (see
	// Ledger.ClaimLedger): the run is over.
	Release bool
	// ClaimedUntil, on a read, is when the holder's claim ends.
	ClaimedUntil time.Time
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
	// StoreUp reports whether the store takes writes.
	StoreUp(up bool)
	// EnqueueToSend records, for a producer's batch that says when it was
	// published, the time from then to the first send of its recipients.
	EnqueueToSend(l Lane, d time.Duration)
	// ProviderUp reports a provider's breaker: up while closed, down from
	// the consecutive failures that open it to the answer that closes it.
	// Called on each change, and once per provider at construction.
	ProviderUp(p Platform, up bool)
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
	// BreakerFailures is how many consecutive provider-down answers (no
	// answer, or a 5xx) open a provider's breaker (default 10).
	// BreakerProbe is how often an open breaker lets one send through as
	// a probe (default 1s); while it is open, recipients of that provider
	// wait for it without spending attempts, and once it closed the
	// retries of the outage are due at once (or at their Retry-After).
	BreakerFailures int
	BreakerProbe    time.Duration
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
	// are read from the store and counters written to it (default 250ms:
	// a pause, resume, cancel or rate made through any instance reaches
	// all of them within a second, with room for the store's answer).
	SyncInterval time.Duration
	// HandBackTimeout bounds publishing the unsent remainders at hard stop
	// (default 5s).
	HandBackTimeout time.Duration
	// LedgerFlush is how often the ledger records the progress of the
	// batches being sent (default 20ms). It bounds the duplicates after a
	// crash: sends in flight plus those of the last LedgerFlush.
	LedgerFlush time.Duration
	// Owner names this instance in the ledger's claims (default: the host
	// name and a random suffix, new at each start). Instances sharing a
	// store must have different owners.
	Owner string
	// LedgerLease is how long a claim on a message's ledger entry holds
	// without renewal (default 5s; renewed every fifth of it while the
	// message is being sent). It bounds how long a copy of a message
	// whose instance died waits before another instance sends it.
	LedgerLease time.Duration
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
	if c.BreakerFailures <= 0 {
		c.BreakerFailures = 10
	}
	if c.BreakerProbe <= 0 {
		c.BreakerProbe = time.Second
	}
	if c.MaxHold <= 0 {
		c.MaxHold = 10 * time.Minute
	}
	if c.CampaignIdle <= 0 {
		c.CampaignIdle = 30 * time.Second
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = 250 * time.Millisecond
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
	if c.LedgerLease <= 0 {
		c.LedgerLease = 5 * time.Second
	}
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
}

// defaultOwner is the host name with a random suffix: unique to this
// process among the instances sharing a store.
func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil {
		host = "pushd"
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Deps are the collaborators of a Dispatcher.
type Deps struct {
	Logger  *slog.Logger
	Metrics Metrics
	Outbox  Outbox
	// Lanes are consumed from Start to Stop; nil: nothing is consumed
	// from them (tests hand deliveries to handleLane).
	Lanes  Lanes
	Queues CampaignQueues
	Store  CampaignStore
	Events EventPublisher
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
//
// It is made of parts with one job each, and no part points back to it:
// the campaigns (registry, campaign) own their state, consumers and
// ending; the limiter owns the global and provider buckets; the senders
// send; the resolver resolves runs and keeps the ledger; Control is the
// front the admin module uses. The Dispatcher itself takes deliveries in
// (from the lanes, and from the campaign queues' consumers), turns each
// into a run and submits its recipients, runs the bookkeeping loop, and
// owns the life of the whole: Start, Stop.
type Dispatcher struct {
	*Control

	cfg       Config
	log       *slog.Logger
	met       Metrics
	out       Outbox
	lanes     Lanes
	queues    CampaignQueues
	filter    Filter
	ledger    Ledger
	providers [numPlatforms]Provider

	lim       *limiter
	campaigns *registry
	consumers *consumerGroup
	send      *senders
	res       *resolver
	store     *storeGate

	// hardCtx ends at the hard stop: nothing is sent any more, what is
	// left is handed back.
	hardCtx  context.Context
	hardStop context.CancelFunc
	started  chan struct{} // closed once Start has started everything
	done     chan struct{} // closed once everything returned after the hard stop
	doneOnce sync.Once
	lifeMu   sync.Mutex // orders Start against Stop
	begun    bool       // Start was called

	// handling is held shared by each delivery being handled and
	// exclusively by the hand-back, so that the hand-back never races a
	// submission.
	handling sync.RWMutex

	signals testSignals
}

// New returns a Dispatcher. Start starts it.
func New(cfg Config, deps Deps) *Dispatcher {
	cfg.setDefaults()
	d := &Dispatcher{
		cfg:     cfg,
		log:     deps.Logger,
		met:     deps.Metrics,
		out:     deps.Outbox,
		lanes:   deps.Lanes,
		queues:  deps.Queues,
		filter:  deps.Filter,
		ledger:  deps.Ledger,
		started: make(chan struct{}),
		done:    make(chan struct{}),
	}
	d.hardCtx, d.hardStop = context.WithCancel(context.Background())
	for p, prov := range deps.Providers {
		if p > PlatformUnknown && p < numPlatforms {
			d.providers[p] = prov
		}
	}
	d.lim = newLimiter(cfg.Limits, cfg.Clock, d.log, d.met, deps.Limits)
	d.store = newStoreGate(d.log, d.met, cfg.Clock, &d.signals)
	d.consumers = newConsumerGroup(d.hardCtx)
	d.campaigns = newRegistry(&campaignEnv{
		log:       d.log,
		met:       d.met,
		clock:     cfg.Clock,
		queues:    deps.Queues,
		out:       deps.Outbox,
		store:     deps.Store,
		lim:       d.lim,
		consumers: d.consumers,
		handle:    d.handleCampaign,
		gate:      d.store,
		signals:   &d.signals,
	}, deps.Events, cfg.CampaignIdle)
	var brk breakers
	for _, p := range Platforms {
		brk[p] = newBreaker(p, cfg.Clock, d.met, d.log, cfg.BreakerFailures, cfg.BreakerProbe)
	}
	d.send = newSenders(d.log, d.met, cfg.Clock, d.lim, d.providers, cfg.Workers, &brk)
	d.res = &resolver{
		log:             d.log,
		met:             d.met,
		clock:           cfg.Clock,
		out:             deps.Outbox,
		events:          deps.Events,
		blacklist:       deps.Blacklist,
		ledger:          deps.Ledger,
		gate:            d.store,
		signals:         &d.signals,
		maxAttempts:     cfg.MaxAttempts,
		retryBase:       cfg.RetryBase,
		retryMax:        cfg.RetryMax,
		breakers:        &brk,
		handBackTimeout: cfg.HandBackTimeout,
		owner:           cfg.Owner,
		lease:           cfg.LedgerLease,
		stopped:         d.hardCtx.Done(),
		tried:           make(chan *run, 64),
		active:          make(map[*run]struct{}),
		keys:            make(map[string]*run),
		idle:            make(chan struct{}),
		dirty:           make(map[*run]struct{}),
	}
	d.Control = &Control{store: deps.Store, campaigns: d.campaigns, lim: d.lim, started: d.started}
	return d
}

func (d *Dispatcher) now() time.Time { return d.cfg.Clock.Now() }

// StoreUp reports whether the store takes writes: false from a failed
// write until one succeeds. Readiness includes it.
func (d *Dispatcher) StoreUp() bool { return d.store.Up() }

// Errors of the life cycle.
var (
	errStarted = errors.New("dispatcher: already started")
	errStopped = errors.New("dispatcher: stopped")
)

// Start starts the dispatcher and returns once it consumes: the campaigns
// of the store are followed, the senders, the resolver and the
// bookkeeping run, and the lanes and the campaign queues are consumed, on
// whatever broker connection is live. It fails when the store cannot be
// read, or when called twice or after Stop.
//
// ctx is the dispatcher's life: when it ends the hard stop comes at once
// (nothing is sent any more, what is left is handed back). Stop is the
// soft stop.
func (d *Dispatcher) Start(ctx context.Context) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	switch {
	case d.hardCtx.Err() != nil:
		return errStopped
	case d.begun:
		return errStarted
	}
	d.begun = true
	hard := d.hardCtx
	// This instance's share of the cluster-wide rates from its first
	// send: the instances consuming already, and itself (not consuming
	// yet). Until the bookkeeping's first count it would otherwise take
	// the whole rate.
	if d.lanes != nil {
		if n, err := d.queues.Instances(hard); err == nil {
			d.lim.setInstances(n + 1)
		}
	}
	if err := d.campaigns.load(hard); err != nil {
		d.hardStop()
		d.doneOnce.Do(func() { close(d.done) })
		return err
	}
	d.lim.sync(hard)
	bookTick := newTicker(d.cfg.Clock, d.cfg.SyncInterval)
	var flushTick *ticker
	if d.ledger != nil {
		flushTick = newTicker(d.cfg.Clock, d.cfg.LedgerFlush)
	}
	var wg sync.WaitGroup
	wg.Go(func() { d.send.run(hard) })
	wg.Go(func() { d.res.run(hard, flushTick) })
	wg.Go(func() { d.bookkeeping(hard, bookTick) })
	if d.lanes != nil {
		d.consumers.start(func(ctx context.Context) { d.lanes.Consume(ctx, d.handleLane) })
	}
	unwatch := context.AfterFunc(ctx, d.hardStop)
	close(d.started)
	go func() {
		<-hard.Done()
		unwatch()
		d.consumers.stopAll(context.Background())
		wg.Wait()
		d.handling.Lock()
		d.res.handBack()
		d.handling.Unlock()
		d.campaigns.flushCounters(context.Background())
		d.doneOnce.Do(func() { close(d.done) })
	}()
	return nil
}

// Stop stops the dispatcher softly: it stops consuming (deliveries that
// arrived but were not handled go back to the broker), lets the runs in
// progress be resolved and, if ctx ends first, hands back what is left:
// unsent recipients go back to their campaign's queue and the delivery is
// acked, or requeued whole if that fails. It returns once every goroutine
// of the dispatcher has returned: nil when everything in progress was
// resolved, ctx's error when some of it was handed back.
//
// Stop may be called twice, before Start (Start then fails), or after the
// hard stop.
func (d *Dispatcher) Stop(ctx context.Context) error {
	d.lifeMu.Lock()
	begun := d.begun
	d.begun = true
	d.lifeMu.Unlock()
	if !begun {
		d.hardStop()
		d.doneOnce.Do(func() { close(d.done) })
		return nil
	}
	d.consumers.stopAll(ctx)
	drained := d.res.drain(ctx)
	d.hardStop()
	<-d.done
	if !drained {
		return fmt.Errorf("dispatcher: stop deadline reached, unfinished batches handed back: %w", ctx.Err())
	}
	return nil
}

// bookkeeping runs until ctx ends: on each tick it applies changes made
// elsewhere (other instances, or the admin module of this one), writes
// counters to the store, ends idle campaigns and follows the number of
// instances.
func (d *Dispatcher) bookkeeping(ctx context.Context, tick *ticker) {
	tick.run(ctx, func() {
		d.campaigns.syncChanges(ctx)
		d.lim.sync(ctx)
		d.campaigns.flushCounters(ctx)
		d.campaigns.endIdle(ctx)
		// Each tick (a passive declare): an instance stopping or starting
		// changes every share within a tick, so the cluster's rate holds.
		if inst, err := d.queues.Instances(ctx); err == nil && d.lim.setInstances(inst) {
			d.campaigns.rescale()
		}
		d.met.Campaigns(d.campaigns.byStatus())
		d.signals.bookkept.Signal(struct{}{})
	})
}
