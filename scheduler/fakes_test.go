package scheduler

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// fakeStore is an in-memory Store. Claim is exactly-once under its mutex:
// a campaign is handed to one owner at a time, and to another only once
// its lease has expired.
type fakeStore struct {
	mu        sync.Mutex
	camps     map[string]*fakeCampaign
	audiences map[string][]Recipient // in pos order
	// dead owners are crashed instances: their writes never land.
	dead map[string]bool
	// progressed receives every successful Progress.
	progressed chan progressCall
	// reclaim makes Claim hand running campaigns to their owner again,
	// as a store does once a lease ran out unrenewed.
	reclaim bool
}

type fakeCampaign struct {
	Campaign
	status       string // scheduled, running, missed, cancelled
	publishedAll bool
	owner        string
	until        time.Time
}

type progressCall struct {
	ID, Owner string
	Cursor    Cursor
	Published int64
	Until     time.Time
	Done      bool
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		camps: map[string]*fakeCampaign{}, audiences: map[string][]Recipient{}, dead: map[string]bool{},
		progressed: make(chan progressCall, 10000),
	}
}

func (f *fakeStore) schedule(c Campaign) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.camps[c.ID] = &fakeCampaign{Campaign: c, status: "scheduled"}
}

func (f *fakeStore) setStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.camps[id].status = status
}

func (f *fakeStore) kill(owner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dead[owner] = true
}

func (f *fakeStore) get(id string) fakeCampaign {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.camps[id]
}

func (f *fakeStore) Claim(_ context.Context, owner string, now time.Time, leaseFor, maxLate time.Duration, limit int) (due []Campaign, missed []string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.camps))
	for id := range f.camps {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		c := f.camps[id]
		switch {
		case len(due) >= limit:
		case c.status == "scheduled" && !c.FireAt.After(now):
			if c.FireAt.Before(now.Add(-maxLate)) {
				c.status = "missed"
				missed = append(missed, id)
				continue
			}
			c.status, c.owner, c.until = "running", owner, now.Add(leaseFor)
			due = append(due, c.Campaign)
		case c.status == "running" && !c.publishedAll && (c.until.Before(now) || f.reclaim && c.owner == owner):
			c.owner, c.until = owner, now.Add(leaseFor)
			due = append(due, c.Campaign)
		}
	}
	return due, missed, nil
}

func (f *fakeStore) NextFire(context.Context) (time.Time, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var next time.Time
	for _, c := range f.camps {
		if c.status == "scheduled" && (next.IsZero() || c.FireAt.Before(next)) {
			next = c.FireAt
		}
	}
	return next, !next.IsZero(), nil
}

func (f *fakeStore) Progress(_ context.Context, id, owner string, cur Cursor, published int64, until time.Time, done bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead[owner] {
		return errors.New("fake store: the process is dead")
	}
	c := f.camps[id]
	if c.status != "running" || c.owner != owner {
		return ErrLeaseLost
	}
	c.Cursor, c.Published, c.until = cur, published, until
	if done {
		c.publishedAll, c.owner = true, ""
	}
	f.progressed <- progressCall{id, owner, cur, published, until, done}
	return nil
}

func (f *fakeStore) Recipients(ctx context.Context, audienceID string, byZone bool, after Cursor, n int, fn func([]Recipient) error) error {
	f.mu.Lock()
	all := slices.Clone(f.audiences[audienceID])
	f.mu.Unlock()
	key := func(r Recipient) Cursor {
		if byZone {
			return Cursor{r.TimeZone, r.Pos}
		}
		return Cursor{Pos: r.Pos}
	}
	less := func(a, b Cursor) int { return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.Pos, b.Pos)) }
	slices.SortFunc(all, func(a, b Recipient) int { return less(key(a), key(b)) })
	buf := make([]Recipient, 0, n)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := fn(buf)
		for i := range buf { // the slice is reused: catch callers that keep it
			buf[i] = Recipient{Token: "reused"}
		}
		buf = buf[:0]
		return err
	}
	for _, r := range all {
		if less(key(r), after) <= 0 {
			continue
		}
		if len(buf) == n || (byZone && len(buf) > 0 && buf[0].TimeZone != r.TimeZone) {
			if err := flush(); err != nil {
				return err
			}
		}
		buf = append(buf, r)
	}
	return flush()
}

// sent is one batch the fake publisher was given.
type sent struct {
	Lane  dispatcher.Lane
	ID    string
	Body  []byte
	Batch *dispatcher.Batch
	OK    bool // what the publisher answered
}

// fakePublisher records batches. hook, when set, decides the answer of
// each publish (nil: confirmed); it may block on ctx.
type fakePublisher struct {
	mu   sync.Mutex
	all  []sent
	hook func(ctx context.Context, id string) error
	got  chan sent
}

func newFakePublisher() *fakePublisher { return &fakePublisher{got: make(chan sent, 10000)} }

func (p *fakePublisher) PublishBatch(ctx context.Context, lane dispatcher.Lane, batchID string, body []byte) error {
	p.mu.Lock()
	hook := p.hook
	p.mu.Unlock()
	var err error
	if hook != nil {
		err = hook(ctx, batchID)
	}
	b, derr := dispatcher.DecodeBatch(body)
	if derr != nil {
		panic("scheduler published a batch that does not decode: " + derr.Error())
	}
	s := sent{Lane: lane, ID: batchID, Body: slices.Clone(body), Batch: b, OK: err == nil}
	p.mu.Lock()
	p.all = append(p.all, s)
	p.mu.Unlock()
	p.got <- s
	return err
}

func (p *fakePublisher) setHook(h func(ctx context.Context, id string) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = h
}

// holdAt makes the publish of batch id wait: entered is closed when it
// starts, and it is confirmed once the test closes release.
func (p *fakePublisher) holdAt(id string) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	p.setHook(func(_ context.Context, got string) error {
		if got == id {
			close(entered)
			<-release
		}
		return nil
	})
	return entered, release
}

// confirmed returns the batches the publisher confirmed, in order.
func (p *fakePublisher) confirmed() []sent {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []sent
	for _, s := range p.all {
		if s.OK {
			out = append(out, s)
		}
	}
	return out
}

// fakeMetrics counts what the scheduler reports.
type fakeMetrics struct {
	mu sync.Mutex
	c  counts
}

type counts struct {
	due, started, resumed, missed, pubErr, published int
	lateness                                         []time.Duration
}

func (m *fakeMetrics) Due(d int) { m.mu.Lock(); m.c.due += d; m.mu.Unlock() }
func (m *fakeMetrics) Started(l time.Duration, resumed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.c.started++
	if resumed {
		m.c.resumed++
		return
	}
	m.c.lateness = append(m.c.lateness, l)
}
func (m *fakeMetrics) Missed(n int)    { m.mu.Lock(); m.c.missed += n; m.mu.Unlock() }
func (m *fakeMetrics) Published(n int) { m.mu.Lock(); m.c.published += n; m.mu.Unlock() }
func (m *fakeMetrics) PublishFailed()  { m.mu.Lock(); m.c.pubErr++; m.mu.Unlock() }

func (m *fakeMetrics) snapshot() counts {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.c
	c.lateness = slices.Clone(c.lateness)
	return c
}
