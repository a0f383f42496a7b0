package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/lists"
)

// fakeDelivery is a Delivery whose resolution is observable.
type fakeDelivery struct {
	body      []byte
	lane      Lane
	attempt   int
	key       string
	holdUntil time.Time
	published time.Time
	repub     bool
	lost      chan struct{}

	mu       sync.Mutex
	acked    int
	requeued int
	resolved chan struct{}
}

func newDelivery(t *testing.T, b *Batch) *fakeDelivery {
	t.Helper()
	body, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return rawDelivery(body)
}

func rawDelivery(body []byte) *fakeDelivery {
	return &fakeDelivery{body: body, lost: make(chan struct{}), resolved: make(chan struct{})}
}

// value returns the Delivery the dispatcher is handed for d.
func (d *fakeDelivery) value() Delivery {
	return Delivery{
		Body: d.body, Lane: d.lane, MessageID: "m-1", Republished: d.repub,
		Hop: Hop{Attempt: d.attempt, Key: d.key, Published: d.published}, HoldUntil: d.holdUntil, Acker: d,
	}
}

func (d *fakeDelivery) Lost() <-chan struct{} { return d.lost }
func (d *fakeDelivery) Ack() error            { return d.resolve(&d.acked) }
func (d *fakeDelivery) Requeue() error        { return d.resolve(&d.requeued) }

func (d *fakeDelivery) resolve(n *int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	*n++
	if d.acked+d.requeued == 1 {
		close(d.resolved)
	}
	return nil
}

func (d *fakeDelivery) wait(t *testing.T) (acked, requeued int) {
	t.Helper()
	select {
	case <-d.resolved:
	case <-time.After(10 * time.Second):
		t.Fatal("delivery not resolved")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.acked, d.requeued
}

// fakeOutbox records what the dispatcher holds and dead-letters.
type fakeOutbox struct {
	mu    sync.Mutex
	holds []held
	dead  []dead
	fail  error
}

type held struct {
	lane    Lane
	batch   *Batch
	attempt int
	key     string
	at      time.Time
}

type dead struct {
	body []byte
	why  DeadLetter
}

func (o *fakeOutbox) Hold(_ context.Context, lane Lane, body []byte, h Hop, at time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return o.fail
	}
	b, err := DecodeBatch(body)
	if err != nil {
		return fmt.Errorf("held body does not decode: %w", err)
	}
	o.holds = append(o.holds, held{lane, b, h.Attempt, h.Key, at})
	return nil
}

func (o *fakeOutbox) DeadLetter(_ context.Context, body []byte, why DeadLetter) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return o.fail
	}
	o.dead = append(o.dead, dead{body, why})
	return nil
}

func (o *fakeOutbox) snapshot() ([]held, []dead) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]held(nil), o.holds...), append([]dead(nil), o.dead...)
}

// fakeQueues keeps each campaign's queue as a buffered Go channel.
type fakeQueues struct {
	mu      sync.Mutex
	queues  map[string]chan *fakeDelivery
	routed  map[string]int // messages routed per campaign
	deleted []string
	fail    error
	events  []string
	created []*fakeDelivery
	// stall, when set, holds Route and DeleteCampaignQueue until it is
	// closed, as a broker that does not answer; stalled receives a value
	// as each call starts waiting.
	stall, stalled chan struct{}
	// others, when set, is the number of instances consuming the lanes
	// that Instances answers; 0 answers 1.
	others int
}

// wait holds a call while the broker stalls.
func (q *fakeQueues) wait(ctx context.Context) error {
	q.mu.Lock()
	stall, stalled := q.stall, q.stalled
	q.mu.Unlock()
	if stall == nil {
		return nil
	}
	stalled <- struct{}{}
	select {
	case <-stall:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newFakeQueues() *fakeQueues {
	return &fakeQueues{queues: map[string]chan *fakeDelivery{}, routed: map[string]int{}}
}

func (q *fakeQueues) queue(id string) chan *fakeDelivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.queues[id]
	if c == nil {
		c = make(chan *fakeDelivery, 10000)
		q.queues[id] = c
	}
	return c
}

// routedTo returns how many messages were routed to campaign id's queue.
func (q *fakeQueues) routedTo(id string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.routed[id]
}

func (q *fakeQueues) Route(ctx context.Context, id string, body []byte, h Hop) error {
	if err := q.wait(ctx); err != nil {
		return err
	}
	q.mu.Lock()
	fail := q.fail
	q.routed[id]++
	q.mu.Unlock()
	if fail != nil {
		return fail
	}
	d := rawDelivery(body)
	d.attempt, d.key, d.published, d.repub = h.Attempt, h.Key, h.Published, true
	q.mu.Lock()
	q.created = append(q.created, d)
	q.mu.Unlock()
	q.queue(id) <- d
	return nil
}

// settled reports whether every routed message was consumed and resolved.
func (q *fakeQueues) settled() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range q.queues {
		if len(c) > 0 {
			return false
		}
	}
	for _, d := range q.created {
		select {
		case <-d.resolved:
		default:
			return false
		}
	}
	return true
}

func (q *fakeQueues) ConsumeCampaign(ctx context.Context, id string, h func(context.Context, Delivery)) {
	c := q.queue(id)
	for {
		select {
		case d := <-c:
			h(ctx, d.value())
		case <-ctx.Done():
			return
		}
	}
}

func (q *fakeQueues) DeleteCampaignQueue(ctx context.Context, id string) (bool, error) {
	if err := q.wait(ctx); err != nil {
		return false, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queues[id]) > 0 {
		return false, nil
	}
	delete(q.queues, id)
	q.deleted = append(q.deleted, id)
	return true, nil
}

func (q *fakeQueues) Instances(context.Context) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return max(q.others, 1), nil
}

func (q *fakeQueues) PublishEvent(_ context.Context, key string, body []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.events = append(q.events, key+" "+string(body))
	return nil
}

func (q *fakeQueues) PublishEvents(ctx context.Context, key string, bodies [][]byte) error {
	for _, b := range bodies {
		if err := q.PublishEvent(ctx, key, b); err != nil {
			return err
		}
	}
	return nil
}

func (q *fakeQueues) pending(id string) int { return len(q.queue(id)) }

// fakeStore is an in-memory CampaignStore.
type fakeStore struct {
	mu   sync.Mutex
	recs map[string]*CampaignRecord
	rev  int64
	now  func() time.Time
	// failWrites, when set, fails the writes (EnsureCampaign when it
	// would create or change a campaign, AddCampaignCounters), as a full
	// disk or read-only files would; reads go on.
	failWrites error
}

func (s *fakeStore) setFailWrites(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failWrites = err
}

func newFakeStore() *fakeStore {
	return &fakeStore{recs: map[string]*CampaignRecord{}, now: time.Now}
}

func (s *fakeStore) EnsureCampaign(_ context.Context, id string, rate float64) (CampaignRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recs[id]
	if s.failWrites != nil && (r == nil || r.MessageRate != rate || r.Status == StatusFinished) {
		return CampaignRecord{}, s.failWrites
	}
	if r == nil {
		s.rev++
		r = &CampaignRecord{ID: id, Status: StatusRunning, MessageRate: rate, CreatedAt: s.now(), UpdatedAt: s.now(), Rev: s.rev}
		s.recs[id] = r
		return *r, nil
	}
	if r.MessageRate != rate || r.Status == StatusFinished {
		s.rev++
		r.MessageRate, r.Rev = rate, s.rev
		if r.Status == StatusFinished {
			r.Status = StatusRunning
		}
	}
	return *r, nil
}

func (s *fakeStore) SetCampaignStatus(_ context.Context, id string, to Status, from ...Status) (CampaignRecord, CampaignRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recs[id]
	if r == nil {
		return CampaignRecord{}, CampaignRecord{}, ErrNotFound
	}
	before := *r
	ok := len(from) == 0
	for _, f := range from {
		ok = ok || f == r.Status
	}
	if !ok {
		return before, before, fmt.Errorf("%w: %s", ErrConflict, r.Status)
	}
	s.rev++
	r.Status, r.Rev = to, s.rev
	return before, *r, nil
}

func (s *fakeStore) SetCampaignRate(_ context.Context, id string, rate *float64) (CampaignRecord, CampaignRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recs[id]
	if r == nil {
		return CampaignRecord{}, CampaignRecord{}, ErrNotFound
	}
	before := *r
	s.rev++
	r.RateOverride, r.Rev = rate, s.rev
	return before, *r, nil
}

func (s *fakeStore) AddCampaignCounters(_ context.Context, deltas map[string]Counters) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWrites != nil {
		return s.failWrites
	}
	for id, n := range deltas {
		if r := s.recs[id]; r != nil {
			r.Counters = r.Counters.Add(n)
		}
	}
	return nil
}

func (s *fakeStore) Campaign(_ context.Context, id string) (CampaignRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.recs[id]; r != nil {
		return *r, nil
	}
	return CampaignRecord{}, ErrNotFound
}

func (s *fakeStore) Campaigns(context.Context) ([]CampaignRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []CampaignRecord
	for _, r := range s.recs {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rev > out[j].Rev })
	return out, nil
}

func (s *fakeStore) CampaignChanges(_ context.Context, since int64) ([]CampaignRecord, error) {
	all, _ := s.Campaigns(context.Background())
	var out []CampaignRecord
	for _, r := range all {
		if r.Rev > since {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rev < out[j].Rev })
	return out, nil
}

// fakeProvider answers each send with its send function.
type fakeProvider struct {
	send    func(ctx context.Context, to *Recipient) Result
	prepare func(n *Notification) error

	mu    sync.Mutex
	count map[string]int
	order []string
}

func (p *fakeProvider) Prepare(n *Notification) (Message, error) {
	if p.prepare != nil {
		if err := p.prepare(n); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *fakeProvider) Send(ctx context.Context, to *Recipient) Result {
	p.mu.Lock()
	if p.count == nil {
		p.count = map[string]int{}
	}
	p.count[to.Token]++
	p.order = append(p.order, to.Token)
	p.mu.Unlock()
	if p.send == nil {
		return Result{Outcome: Sent}
	}
	return p.send(ctx, to)
}

func (p *fakeProvider) sends() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.count {
		out[k] = v
	}
	return out
}

func (p *fakeProvider) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.order)
}

// countingMetrics counts what tests assert on; the rest is discarded.
type countingMetrics struct {
	received, dropped, deadRecipients, cancelled atomic.Int64
	filtered, invalid, skipped                   atomic.Int64
	outcomes                                     [numOutcomes]atomic.Int64
	inFlight                                     atomic.Int64
	storeUp                                      atomic.Bool
	toSendMu                                     sync.Mutex
	toSend                                       []laneWait // EnqueueToSend's observations
	providerDown                                 [numPlatforms]atomic.Bool
	providerOpened                               [numPlatforms]atomic.Int64
}

func (m *countingMetrics) BatchReceived(_ Lane, n int)       { m.received.Add(int64(n)) }
func (m *countingMetrics) BatchDeadLettered(string)          {}
func (m *countingMetrics) RecipientsDropped(_ string, n int) { m.dropped.Add(int64(n)) }
func (m *countingMetrics) RecipientsCancelled(n int)         { m.cancelled.Add(int64(n)) }
func (m *countingMetrics) RecipientsDeadLettered(_ Platform, n int) {
	m.deadRecipients.Add(int64(n))
}
func (m *countingMetrics) SendDone(_ Platform, o Outcome, _ time.Duration) { m.outcomes[o].Add(1) }
func (m *countingMetrics) CredentialFault(Platform)                        {}
func (m *countingMetrics) InFlight(delta int)                              { m.inFlight.Add(int64(delta)) }
func (m *countingMetrics) ThrottleWait(string, time.Duration)              {}
func (m *countingMetrics) RateLimit(string, float64)                       {}
func (m *countingMetrics) Campaigns(map[Status]int)                        {}
func (m *countingMetrics) RecipientsFiltered(_, _ string, n int)           { m.filtered.Add(int64(n)) }
func (m *countingMetrics) InvalidTokens(_ Platform, n int)                 { m.invalid.Add(int64(n)) }
func (m *countingMetrics) LedgerSkipped(n int)                             { m.skipped.Add(int64(n)) }
func (m *countingMetrics) EnqueueToSend(l Lane, d time.Duration) {
	m.toSendMu.Lock()
	defer m.toSendMu.Unlock()
	m.toSend = append(m.toSend, laneWait{l, d})
}

// fakeFilter blocks the listed tokens and user ids, and in test mode lets
// only the whitelisted through.
type fakeFilter struct {
	black, white map[string]bool
}

func (f *fakeFilter) Filter(platform, token, userID string, test bool) (lists.Name, string, bool) {
	if f.black[token] || (userID != "" && f.black[userID]) {
		return lists.Blacklist, "opt_out", true
	}
	if test && !f.white[token] && !(userID != "" && f.white[userID]) {
		return lists.Whitelist, "not_whitelisted", true
	}
	return "", "", false
}

// fakeBlacklist records the entries added.
type fakeBlacklist struct {
	mu      sync.Mutex
	entries []lists.Entry
}

func (b *fakeBlacklist) AddListEntries(_ context.Context, es []lists.Entry) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.entries = append(b.entries, es...)
	return len(es), nil
}

// laneWait is one enqueue-to-send observation.
type laneWait struct {
	lane Lane
	d    time.Duration
}

// enqueueToSend returns the enqueue-to-send observations so far.
func (m *countingMetrics) enqueueToSend() []laneWait {
	m.toSendMu.Lock()
	defer m.toSendMu.Unlock()
	return append([]laneWait(nil), m.toSend...)
}

// fakeLedger is an in-memory Ledger. Linked to a fakeStore (setupFull
// links it), it adds counts to the store's campaigns and fails when the
// store's writes fail, as one store would.
type fakeLedger struct {
	mu      sync.Mutex
	entries map[string]LedgerEntry
	claims  map[string]fakeClaim
	store   *fakeStore
}

// fakeClaim is a claim on a ledger entry.
type fakeClaim struct {
	owner string
	until time.Time
}

func (l *fakeLedger) ClaimLedger(_ context.Context, key, owner string, now, until time.Time) (LedgerEntry, string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.claims == nil {
		l.claims = map[string]fakeClaim{}
	}
	if c, ok := l.claims[key]; !ok || c.owner == owner || !c.until.After(now) {
		l.claims[key] = fakeClaim{owner, until}
	}
	c := l.claims[key]
	e := l.entries[key]
	e.ClaimedUntil = c.until
	return e, c.owner, nil
}

func (l *fakeLedger) RenewClaims(_ context.Context, owner string, keys []string, until time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if c, ok := l.claims[k]; ok && c.owner == owner {
			l.claims[k] = fakeClaim{owner, until}
		}
	}
	return nil
}

// claim returns the claim on key's entry, if any.
func (l *fakeLedger) claim(key string) (fakeClaim, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.claims[key]
	return c, ok
}

func (l *fakeLedger) link(s *fakeStore) { l.store = s }

// addCounts adds counts to the linked store's campaigns, or fails as its
// writes do.
func (l *fakeLedger) addCounts(counts map[string]Counters) error {
	if l.store == nil {
		return nil
	}
	return l.store.AddCampaignCounters(context.Background(), counts)
}

func (l *fakeLedger) RecordReceived(_ context.Context, key, campaign string, resolved []byte, counts Counters) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.entries[key]; ok {
		return false, nil
	}
	if err := l.addCounts(map[string]Counters{campaign: counts}); err != nil {
		return false, err
	}
	if l.entries == nil {
		l.entries = map[string]LedgerEntry{}
	}
	l.entries[key] = LedgerEntry{Resolved: bytes.Clone(resolved)}
	return true, nil
}

func (l *fakeLedger) LedgerEntry(_ context.Context, key string) (LedgerEntry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries[key], nil
}

func (l *fakeLedger) RecordLedger(_ context.Context, entries map[string]LedgerEntry, counts map[string]Counters) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.addCounts(counts); err != nil {
		return err
	}
	if l.entries == nil {
		l.entries = map[string]LedgerEntry{}
	}
	for k, e := range entries {
		l.entries[k] = LedgerEntry{
			Resolved: bytes.Clone(e.Resolved), Rest: bytes.Clone(e.Rest), Retry: bytes.Clone(e.Retry),
		}
		if e.Release {
			delete(l.claims, k)
		}
	}
	return nil
}

// fakeLimits is an in-memory LimitStore, shared like the store would be.
type fakeLimits struct {
	mu sync.Mutex
	m  map[string]LimitSetting
}

func (l *fakeLimits) RateLimits(context.Context) (map[string]LimitSetting, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.m), nil
}

func (l *fakeLimits) SetRateLimit(_ context.Context, level string, ls *LimitSetting) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]LimitSetting{}
	}
	if ls == nil {
		delete(l.m, level)
	} else {
		l.m[level] = *ls
	}
	return nil
}

// processDirect runs process as the intake or a campaign consumer would,
// counting the run in the campaign first.
func processDirect(d *Dispatcher, del *fakeDelivery, b *Batch, c *campaign) {
	c.active.Add(1)
	d.process(del.value(), b, c)
}

func (m *countingMetrics) StoreUp(up bool) { m.storeUp.Store(up) }

func (m *countingMetrics) ProviderUp(p Platform, up bool) {
	if m.providerDown[p].Swap(!up) != !up && !up {
		m.providerOpened[p].Add(1)
	}
}
