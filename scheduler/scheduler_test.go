package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testsignal"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/ratelimit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is where the manual clocks of these tests start.
var t0 = time.Date(2026, 12, 23, 12, 0, 0, 0, time.UTC)

const notification = `{"title":"Spring sale","body":"50% off today","data":{"deeplink":"app://sale"},"sound":"default"}`

// env is what schedulers of a test share: a manual clock, a store and a
// publisher.
type env struct {
	clock *ratelimit.ManualClock
	store *fakeStore
	pub   *fakePublisher
}

func newEnv() *env {
	return &env{clock: ratelimit.NewManualClock(t0), store: newFakeStore(), pub: newFakePublisher()}
}

// running is a Scheduler whose Run goroutine a test started.
type running struct {
	s    *Scheduler
	met  *fakeMetrics
	stop func() // cancels Run and waits for it; harmless twice
}

// start runs a Scheduler on e as owner, with a batch size of 3 unless cfg
// says otherwise.
func (e *env) start(t *testing.T, owner string, cfg Config) *running {
	t.Helper()
	r := &running{met: &fakeMetrics{}}
	cfg.Store, cfg.Publisher, cfg.Owner, cfg.Clock, cfg.Metrics = e.store, e.pub, owner, e.clock, r.met
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 3
	}
	cfg.Logger = testLogger(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.signals.init()
	r.s = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	r.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(r.stop)
	return r
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// audience stores n recipients numbered 1 to n, iOS and Android in turn,
// in the zones zone(pos) gives (nil: none), and returns them.
func (e *env) audience(id string, n int, zone func(pos int64) string) []Recipient {
	rs := make([]Recipient, n)
	for i := range rs {
		pos := int64(i + 1)
		r := Recipient{Pos: pos, Platform: "ios", Token: fmt.Sprintf("%064x", pos), UserID: fmt.Sprintf("u-%d", pos)}
		if pos%2 == 0 {
			r.Platform, r.Token = "android", fmt.Sprintf("fcm:%d", pos)
		}
		if zone != nil {
			r.TimeZone = zone(pos)
		}
		rs[i] = r
	}
	e.store.mu.Lock()
	e.store.audiences[id] = rs
	e.store.mu.Unlock()
	return rs
}

func campaign(id string, fireAt time.Time) Campaign {
	return Campaign{ID: id, Notification: json.RawMessage(notification), AudienceID: "aud", RatePerSecond: 500, FireAt: fireAt}
}

func ids(ss []sent) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

// tokens returns the tokens of the batches, in order.
func tokens(ss []sent) []string {
	var out []string
	for _, s := range ss {
		for _, r := range s.Batch.Recipients {
			out = append(out, r.Token)
		}
	}
	return out
}

func tokensOf(rs []Recipient) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Token
	}
	return out
}

func wantEnded(t *testing.T, r *running, id, how string) {
	t.Helper()
	if got := r.s.signals.ended.Wait(t); got != (ended{id, how}) {
		t.Fatalf("campaign ended %+v, want %s %s", got, id, how)
	}
}

func TestFiresAtItsTimeAndNotBefore(t *testing.T) {
	e := newEnv()
	aud := e.audience("aud", 7, nil)
	e.store.schedule(campaign("c", t0.Add(2500*time.Millisecond)))
	r := e.start(t, "a", Config{})

	for _, want := range []time.Duration{time.Second, time.Second, 500 * time.Millisecond} {
		if got := r.s.signals.sleeping.Wait(t); got.D != want {
			t.Fatalf("sleeps %v, want %v", got.D, want)
		}
		if n := len(e.pub.confirmed()); n != 0 {
			t.Fatalf("%d batches published before the campaign's time", n)
		}
		e.clock.Advance(want)
	}
	wantEnded(t, r, "c", "done")

	got := e.pub.confirmed()
	if want := []string{"c/0000000001", "c/0000000004", "c/0000000007"}; !slices.Equal(ids(got), want) {
		t.Fatalf("batch ids %v, want %v", ids(got), want)
	}
	if !slices.Equal(tokens(got), tokensOf(aud)) {
		t.Errorf("recipients %v, want %v", tokens(got), tokensOf(aud))
	}
	for _, s := range got {
		b := s.Batch
		if s.Lane != dispatcher.Normal || b.BatchID != s.ID || b.Campaign != (dispatcher.Campaign{ID: "c", RatePerSecond: 500}) || b.NotBefore != nil {
			t.Errorf("batch %s: lane %v, %+v", s.ID, s.Lane, b)
		}
		if !strings.Contains(string(s.Body), `"notification":`+notification) {
			t.Errorf("batch %s does not carry the notification as stored: %s", s.ID, s.Body)
		}
	}
	c := e.store.get("c")
	if !c.publishedAll || c.Published != 7 || c.Cursor != (Cursor{Pos: 7}) {
		t.Errorf("stored %+v", c)
	}
	m := r.met.snapshot()
	if m.started != 1 || m.resumed != 0 || !slices.Equal(m.lateness, []time.Duration{0}) || m.published != 7 || m.due != 0 {
		t.Errorf("metrics %+v", m)
	}
}

func TestWakeLooksAgainAtOnce(t *testing.T) {
	e := newEnv()
	e.audience("aud", 2, nil)
	r := e.start(t, "a", Config{})
	if got := r.s.signals.sleeping.Wait(t); got.D != time.Second {
		t.Fatalf("sleeps %v with nothing scheduled, want the poll interval", got.D)
	}
	// The admin API schedules a campaign due in 0.3s, and wakes the
	// scheduler: it is not kept waiting for the rest of the poll.
	e.store.schedule(campaign("c", t0.Add(300*time.Millisecond)))
	r.s.Wake()
	if got := r.s.signals.sleeping.Wait(t); got.D != 300*time.Millisecond {
		t.Fatalf("sleeps %v after Wake, want 300ms", got.D)
	}
	e.clock.Advance(300 * time.Millisecond)
	wantEnded(t, r, "c", "done")
}

func TestLateAndMissed(t *testing.T) {
	e := newEnv()
	e.audience("aud", 2, nil)
	// Scheduled while no pushd ran: 3s late is sent, 2h late (over
	// max_late, 1h) is missed and not sent.
	e.store.schedule(campaign("late", t0.Add(-3*time.Second)))
	e.store.schedule(campaign("missed", t0.Add(-2*time.Hour)))
	r := e.start(t, "a", Config{})
	wantEnded(t, r, "late", "done")
	if got := ids(e.pub.confirmed()); !slices.Equal(got, []string{"late/0000000001"}) {
		t.Errorf("published %v", got)
	}
	if st := e.store.get("missed").status; st != "missed" {
		t.Errorf("the missed campaign is %s", st)
	}
	m := r.met.snapshot()
	if m.missed != 1 || m.started != 1 || !slices.Equal(m.lateness, []time.Duration{3 * time.Second}) {
		t.Errorf("metrics %+v", m)
	}
}

// A crash between a batch's confirm and the stored cursor: the instance
// that takes over publishes the batches of the chunk in that window
// again, byte for byte (the dispatcher's ledger knows a message by a hash
// of its body), and nothing else twice.
func TestResumeAfterACrashRepublishesOnlyTheWindowByteForByte(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup stores the audience and returns the campaign and the
		// batch size.
		setup func(e *env) (Campaign, int)
		// crash reports whether the process dies once the batch is
		// confirmed.
		crash func(id string) bool
	}{
		{
			name: "plain",
			setup: func(e *env) (Campaign, int) {
				e.audience("aud", 10, nil)
				return campaign("c", t0), 3
			},
			crash: func(id string) bool { return id == "c/0000000007" },
		},
		{
			// Its not_before passes while the lease of the dead
			// instance runs out: the copy still carries it.
			name: "recipient_time_zone",
			setup: func(e *env) (Campaign, int) {
				e.audience("aud", 10, func(pos int64) string {
					if pos > 8 {
						return "Asia/Seoul"
					}
					return ""
				})
				c := campaign("c", t0)
				c.SendAt, c.TimeZone, c.RecipientTimeZone = "2026-12-23T12:00:10", "UTC", true
				return c, 3
			},
			crash: func(id string) bool { return id == "c/0000000004" },
		},
		{
			// A chunk too large for one message: the crash comes after its
			// second batch, and both are published again.
			name: "split chunk",
			setup: func(e *env) (Campaign, int) {
				aud := e.audience("aud", 2500, nil)
				for i := range aud {
					aud[i].Platform, aud[i].Token = "android", fmt.Sprintf("%04d", i)+strings.Repeat("t", 2000)
				}
				return campaign("c", t0), 1000
			},
			crash: func(id string) bool { return id > "c/0000001001" && id < "c/0000002001" },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv()
			c, size := tc.setup(e)
			aud := e.store.audiences["aud"]
			e.store.schedule(c)
			var once sync.Once
			e.pub.setHook(func(_ context.Context, id string) error {
				if tc.crash(id) {
					once.Do(func() { e.store.kill("a") }) // confirmed, and then the process dies
				}
				return nil
			})
			a := e.start(t, "a", Config{BatchSize: size})
			a.s.signals.backoff.Wait(t) // its cursor write failed: it is dead
			a.stop()
			wantEnded(t, a, "c", "stopped")
			fromA := e.pub.confirmed()
			cur := e.store.get("c").Cursor

			b := e.start(t, "b", Config{BatchSize: size})
			b.s.signals.sleeping.Wait(t) // the lease is a's for 30s yet
			e.clock.Advance(30*time.Second + time.Second)
			wantEnded(t, b, "c", "done")
			fromB := e.pub.confirmed()[len(fromA):]

			// The window: what a published after the stored cursor.
			var window []sent
			for _, s := range fromA {
				if s.ID > fmt.Sprintf("c/%010d", cur.Pos) {
					window = append(window, s)
				}
			}
			if len(window) == 0 || len(fromB) < len(window) {
				t.Fatalf("window %v, then %v", ids(window), ids(fromB))
			}
			for i, w := range window {
				if fromB[i].ID != w.ID || string(fromB[i].Body) != string(w.Body) {
					t.Errorf("republished %s differs from the first %s:\n%.300s\n%.300s", fromB[i].ID, w.ID, fromB[i].Body, w.Body)
				}
			}
			seen := map[string]int{}
			for _, tok := range tokens(append(fromA[:len(fromA)-len(window):len(fromA)-len(window)], fromB...)) {
				seen[tok]++
			}
			for _, r := range aud {
				if seen[r.Token] != 1 {
					t.Errorf("recipient %d published %d times, the window aside", r.Pos, seen[r.Token])
				}
			}
			if st := e.store.get("c"); !st.publishedAll || st.Published != int64(len(aud)) {
				t.Errorf("stored %+v", st)
			}
			if m := b.met.snapshot(); m.started != 1 || m.resumed != 1 || len(m.lateness) != 0 {
				t.Errorf("metrics of the instance that took over: %+v", m)
			}
		})
	}
}

func TestCancelledCampaignStopsWithinAChunk(t *testing.T) {
	e := newEnv()
	e.audience("aud", 10, nil)
	e.store.schedule(campaign("c", t0))
	entered, release := e.pub.holdAt("c/0000000004")
	r := e.start(t, "a", Config{})
	<-entered
	e.store.setStatus("c", "cancelled") // what the admin API's cancel does
	close(release)
	wantEnded(t, r, "c", "lease_lost")
	if got, want := ids(e.pub.confirmed()), []string{"c/0000000001", "c/0000000004"}; !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
}

func TestClaimedAgainWhilePublishingIsNotPublishedTwice(t *testing.T) {
	e := newEnv()
	aud := e.audience("aud", 7, nil)
	e.store.schedule(campaign("c", t0))
	entered, release := e.pub.holdAt("c/0000000001")
	r := e.start(t, "a", Config{})
	<-entered
	r.s.signals.sleeping.Wait(t) // the claim pass that started it
	e.store.mu.Lock()
	e.store.reclaim = true
	e.store.mu.Unlock()
	r.s.Wake()
	r.s.signals.sleeping.Wait(t) // a claim pass that got it again
	close(release)
	wantEnded(t, r, "c", "done")
	if got := e.pub.confirmed(); !slices.Equal(tokens(got), tokensOf(aud)) {
		t.Errorf("published %v", ids(got))
	}
	if m := r.met.snapshot(); m.started != 1 {
		t.Errorf("started %d times", m.started)
	}
}

func TestPublishErrorRetriesTheSameBatchWithBackoff(t *testing.T) {
	e := newEnv()
	aud := e.audience("aud", 7, nil)
	e.store.schedule(campaign("c", t0))
	var mu sync.Mutex
	fails := 3
	e.pub.setHook(func(_ context.Context, id string) error {
		mu.Lock()
		defer mu.Unlock()
		if id == "c/0000000004" && fails > 0 {
			fails--
			return errors.New("broker down")
		}
		return nil
	})
	r := e.start(t, "a", Config{})
	first := <-e.store.progressed // batch 1's cursor
	for _, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		// The lease is renewed at the cursor reached before each wait.
		if p := <-e.store.progressed; p.Cursor != (Cursor{Pos: 3}) || p.Published != 3 || p.Done || !p.Until.Equal(e.clock.Now().Add(30*time.Second)) {
			t.Fatalf("renewal %+v", p)
		}
		if got := r.s.signals.backoff.Wait(t); got != want {
			t.Fatalf("backoff %v, want %v", got, want)
		}
		e.clock.Advance(want)
	}
	wantEnded(t, r, "c", "done")
	if first.Cursor != (Cursor{Pos: 3}) {
		t.Errorf("first progress %+v", first)
	}
	got := e.pub.confirmed()
	if !slices.Equal(ids(got), []string{"c/0000000001", "c/0000000004", "c/0000000007"}) || !slices.Equal(tokens(got), tokensOf(aud)) {
		t.Errorf("published %v: %v", ids(got), tokens(got))
	}
	if m := r.met.snapshot(); m.pubErr != 3 || m.published != 7 {
		t.Errorf("metrics %+v", m)
	}
}

func TestCancelledWhileRetryingStops(t *testing.T) {
	e := newEnv()
	e.audience("aud", 7, nil)
	e.store.schedule(campaign("c", t0))
	e.pub.setHook(func(context.Context, string) error { return errors.New("broker down") })
	r := e.start(t, "a", Config{})
	r.s.signals.backoff.Wait(t)
	e.store.setStatus("c", "cancelled")
	e.clock.Advance(100 * time.Millisecond) // the next renewal finds it cancelled
	wantEnded(t, r, "c", "lease_lost")
}

func TestTwoSchedulersFireACampaignOnce(t *testing.T) {
	e := newEnv()
	aud := e.audience("aud", 10, nil)
	e.store.schedule(campaign("c", t0.Add(500*time.Millisecond)))
	a, b := e.start(t, "a", Config{}), e.start(t, "b", Config{})
	a.s.signals.sleeping.Wait(t)
	b.s.signals.sleeping.Wait(t)
	e.clock.Advance(500 * time.Millisecond)
	for p := range e.store.progressed {
		if p.Done {
			break
		}
	}
	// Long after: past the lease, both instances have claimed again. A
	// pass may have read the clock before an Advance and armed its timer
	// after it, so the clock moves a second at a time until each has
	// claimed at a later time.
	e.clock.Advance(time.Minute)
	threshold := e.clock.Now()
	claimedLater := func(r *running) func() bool {
		seen := false
		return func() bool {
			for r.s.signals.sleeping.Pending() > 0 {
				if !r.s.signals.sleeping.Wait(t).At.Before(threshold) {
					seen = true
				}
			}
			return seen
		}
	}
	aLater, bLater := claimedLater(a), claimedLater(b)
	testwait.For(t, testsignal.Timeout, "both instances to claim after the lease", func() bool {
		if aLater() && bLater() {
			return true
		}
		e.clock.Advance(time.Second)
		return false
	})

	got := e.pub.confirmed()
	if want := []string{"c/0000000001", "c/0000000004", "c/0000000007", "c/0000000010"}; !slices.Equal(ids(got), want) {
		t.Errorf("published %v, want %v", ids(got), want)
	}
	if !slices.Equal(tokens(got), tokensOf(aud)) {
		t.Errorf("recipients %v", tokens(got))
	}
	if n := a.met.snapshot().started + b.met.snapshot().started; n != 1 {
		t.Errorf("started %d times", n)
	}
}

func TestRecipientTimeZone(t *testing.T) {
	zones := map[int64]string{2: "Asia/Seoul", 3: "America/New_York", 4: "Asia/Seoul", 6: "America/New_York"}
	for _, tc := range []struct {
		name string
		now  time.Time
		// not_before of the batches, in (zone, pos) order: the
		// campaign's zone (Europe/Paris), New York, Seoul.
		want []string
	}{
		{"all ahead", t0, []string{"2026-12-24T09:00:00+01:00", "2026-12-24T09:00:00-05:00", "2026-12-24T09:00:00+09:00"}},
		// Past in Seoul: set all the same (the dispatcher sends at once),
		// so that a batch published again is the same bytes.
		{"past in Seoul", time.Date(2026, 12, 24, 3, 0, 0, 0, time.UTC), []string{"2026-12-24T09:00:00+01:00", "2026-12-24T09:00:00-05:00", "2026-12-24T09:00:00+09:00"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv()
			e.clock = ratelimit.NewManualClock(tc.now)
			e.audience("aud", 6, func(pos int64) string { return zones[pos] })
			c := campaign("c", tc.now)
			c.SendAt, c.TimeZone, c.RecipientTimeZone = "2026-12-24T09:00", "Europe/Paris", true
			e.store.schedule(c)
			r := e.start(t, "a", Config{BatchSize: 1000})
			wantEnded(t, r, "c", "done")

			got := e.pub.confirmed()
			if want := []string{"c/0000000001", "c/0000000003", "c/0000000002"}; !slices.Equal(ids(got), want) {
				t.Fatalf("batch ids %v, want one per zone %v", ids(got), want)
			}
			for i, s := range got {
				var raw struct {
					NotBefore string `json:"not_before"`
				}
				if err := json.Unmarshal(s.Body, &raw); err != nil {
					t.Fatal(err)
				}
				if raw.NotBefore != tc.want[i] {
					t.Errorf("batch %s: not_before %q, want %q", s.ID, raw.NotBefore, tc.want[i])
				}
				if nb := s.Batch.NotBefore; nb != nil && (nb.Hour() != 9 || nb.Minute() != 0) {
					t.Errorf("batch %s: not_before %v is not 09:00 local", s.ID, nb)
				}
			}
			// Seoul's 09:00 is 00:00Z, New York's 14:00Z: the same local
			// time, 14 hours apart.
			if nb1, nb2 := got[1].Batch.NotBefore, got[2].Batch.NotBefore; nb1 != nil && nb2 != nil && nb1.Sub(*nb2) != 14*time.Hour {
				t.Errorf("New York %v and Seoul %v are not 14h apart", nb1, nb2)
			}
			if st := e.store.get("c"); st.Cursor != (Cursor{Zone: "Asia/Seoul", Pos: 4}) {
				t.Errorf("final cursor %+v", st.Cursor)
			}
		})
	}
}

// Recipients too large for one 1 MiB message split a chunk into several
// batches, each named by its first recipient; the cursor is stored at the
// chunk's end.
func TestChunkTooLargeForOneMessageIsSplit(t *testing.T) {
	e := newEnv()
	aud := e.audience("aud", 1500, nil)
	for i := range aud {
		aud[i].Platform, aud[i].Token = "android", fmt.Sprintf("%04d", i)+strings.Repeat("t", 2000)
	}
	e.store.schedule(campaign("c", t0))
	r := e.start(t, "a", Config{BatchSize: 1000})
	wantEnded(t, r, "c", "done")
	got := e.pub.confirmed()
	if len(got) < 3 { // 1000 recipients of 2 kB do not fit 1 MiB
		t.Fatalf("%d batches", len(got))
	}
	pos := int64(1)
	for _, s := range got {
		if len(s.Body) > dispatcher.MaxMessageBytes {
			t.Errorf("batch %s: %d bytes", s.ID, len(s.Body))
		}
		if want := fmt.Sprintf("c/%010d", pos); s.ID != want {
			t.Errorf("batch %s, want %s", s.ID, want)
		}
		pos += int64(len(s.Batch.Recipients))
	}
	for _, want := range []int64{1000, 1500} {
		if p := <-e.store.progressed; p.Cursor.Pos != want {
			t.Errorf("cursor %d, want %d: chunk ends only", p.Cursor.Pos, want)
		}
	}
	if !slices.Equal(tokens(got), tokensOf(aud)) {
		t.Error("recipients differ from the audience")
	}
}

func TestNotificationBreakingTheSchemaIsNotPublished(t *testing.T) {
	e := newEnv()
	e.audience("aud", 4, nil)
	c := campaign("c", t0)
	c.Notification = json.RawMessage(`{"title":"x","priority":"urgent"}`)
	e.store.schedule(c)
	r := e.start(t, "a", Config{})
	wantEnded(t, r, "c", "failed")
	if n := len(e.pub.all); n != 0 {
		t.Errorf("%d batches published", n)
	}
	_, err := r.s.SendTest(context.Background(), "c.test-1", c.Notification, e.store.audiences["aud"])
	if !errors.Is(err, errPermanent) || !strings.Contains(err.Error(), "priority") {
		t.Errorf("SendTest: %v", err)
	}
}

func TestStopHandsTheCampaignBack(t *testing.T) {
	e := newEnv()
	e.audience("aud", 10, nil)
	e.store.schedule(campaign("c", t0))
	entered := make(chan struct{})
	e.pub.setHook(func(ctx context.Context, id string) error {
		if id == "c/0000000004" {
			close(entered)
			<-ctx.Done() // the broker never confirms
			return ctx.Err()
		}
		return nil
	})
	r := e.start(t, "a", Config{})
	<-entered
	r.stop()
	wantEnded(t, r, "c", "stopped")
	c := e.store.get("c")
	if c.Cursor != (Cursor{Pos: 3}) || c.Published != 3 || !c.until.Equal(e.clock.Now()) || c.publishedAll {
		t.Errorf("stored %+v: want the cursor of the last confirm and the lease ended now", c)
	}
}

func TestSendTest(t *testing.T) {
	e := newEnv()
	rs := e.audience("aud", 2500, nil)
	s, err := New(Config{Store: e.store, Publisher: e.pub, Owner: "a", Clock: e.clock, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.SendTest(context.Background(), "c.test-1", json.RawMessage(notification), rs)
	if err != nil || n != 2500 {
		t.Fatalf("SendTest = %d, %v", n, err)
	}
	got := e.pub.confirmed()
	if want := []string{"c.test-1/1", "c.test-1/2", "c.test-1/3"}; !slices.Equal(ids(got), want) {
		t.Fatalf("batch ids %v, want %v", ids(got), want)
	}
	for _, b := range got {
		if b.Lane != dispatcher.High || b.Batch.Campaign != (dispatcher.Campaign{ID: "c.test-1", Test: true}) {
			t.Errorf("batch %s: lane %v, campaign %+v", b.ID, b.Lane, b.Batch.Campaign)
		}
	}
	if !slices.Equal(tokens(got), tokensOf(rs)) {
		t.Error("recipients differ")
	}

	e.pub.setHook(func(_ context.Context, id string) error {
		if id == "c.test-2/2" {
			return errors.New("broker down")
		}
		return nil
	})
	n, err = s.SendTest(context.Background(), "c.test-2", json.RawMessage(notification), rs)
	if err == nil || n != 1000 {
		t.Errorf("SendTest with a failing publish = %d, %v; want 1000 and the error", n, err)
	}
}

func TestNewChecksTheConfig(t *testing.T) {
	e := newEnv()
	ok := Config{Store: e.store, Publisher: e.pub, Owner: "a"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no store", func(c *Config) { c.Store = nil }, "store"},
		{"no publisher", func(c *Config) { c.Publisher = nil }, "publisher"},
		{"no owner", func(c *Config) { c.Owner = "" }, "owner"},
		{"batch too large", func(c *Config) { c.BatchSize = 1001 }, "scheduler.batch_size"},
		{"negative lease", func(c *Config) { c.LeaseFor = -time.Second }, "scheduler.lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	s, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.cfg; c.BatchSize != 1000 || c.PollInterval != time.Second || c.LeaseFor != 30*time.Second || c.MaxLate != time.Hour || c.RetryMax != 5*time.Second {
		t.Errorf("defaults %+v", c)
	}
}
