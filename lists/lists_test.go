package lists

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/testwait"
)

// memSource is an in-memory Source with a change log, like the store.
// Its function fields, when set, run first in the method of that name and
// may make it fail.
type memSource struct {
	mu      sync.Mutex
	entries map[Name]map[Key]Entry
	log     []Change

	eachEntry   func(list Name) error
	listChanges func(since int64) error
	listRev     func() error

	changeCalls atomic.Int64
}

func newMemSource() *memSource {
	return &memSource{entries: map[Name]map[Key]Entry{Blacklist: {}, Whitelist: {}}}
}

// rev returns the latest change's Rev; the caller holds m.mu.
func (m *memSource) rev() int64 {
	if len(m.log) == 0 {
		return 0
	}
	return m.log[len(m.log)-1].Rev
}

// add adds or replaces entries and logs each as a change.
func (m *memSource) add(es ...Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range es {
		m.entries[e.List][e.Key()] = e
		m.log = append(m.log, Change{Rev: m.rev() + 1, Op: OpAdd, Entry: e})
	}
}

// remove removes an entry and logs it.
func (m *memSource) remove(e Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries[e.List], e.Key())
	m.log = append(m.log, Change{Rev: m.rev() + 1, Op: OpRemove, Entry: Entry{List: e.List, Kind: e.Kind, Platform: e.Platform, Value: e.Value}})
}

// replace replaces a whole list (an import) and logs one OpReload.
func (m *memSource) replace(list Name, es ...Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[list] = map[Key]Entry{}
	for _, e := range es {
		m.entries[list][e.Key()] = e
	}
	m.log = append(m.log, Change{Rev: m.rev() + 1, Op: OpReload, Entry: Entry{List: list}})
}

// logChange appends a change to the log without touching the entries.
func (m *memSource) logChange(c Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c.Rev = m.rev() + 1
	m.log = append(m.log, c)
}

func (m *memSource) EachEntry(ctx context.Context, list Name, fn func(Entry) error) error {
	if m.eachEntry != nil {
		if err := m.eachEntry(list); err != nil {
			return err
		}
	}
	m.mu.Lock()
	es := slices.Collect(maps.Values(m.entries[list]))
	m.mu.Unlock()
	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func (m *memSource) ListChanges(ctx context.Context, since int64, limit int) ([]Change, error) {
	m.changeCalls.Add(1)
	if m.listChanges != nil {
		if err := m.listChanges(since); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Change
	for _, c := range m.log {
		if c.Rev > since && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

func (m *memSource) ListRev(ctx context.Context) (int64, error) {
	if m.listRev != nil {
		if err := m.listRev(); err != nil {
			return 0, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev(), nil
}

// testLogger returns a logger that writes to t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

func user(list Name, id, reason string) Entry {
	return Entry{List: list, Kind: User, Value: id, Reason: reason}
}

func token(list Name, platform, tok, reason string) Entry {
	return Entry{List: list, Kind: Token, Platform: platform, Value: tok, Reason: reason}
}

// setup returns Lists on a memSource holding the given entries.
func setup(t *testing.T, cfg Config, es ...Entry) (*Lists, *memSource) {
	t.Helper()
	src := newMemSource()
	src.add(es...)
	return New(src, testLogger(t), cfg), src
}

// run runs l.Run until the test ends.
func run(t *testing.T, l *Lists) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	})
}

// in reports whether an entry's key is in its list, with its reason.
func in(l *Lists, e Entry) (string, bool) {
	return l.set(e.List).Lookup(e.Kind, e.Platform, e.Value)
}

func TestConfig(t *testing.T) {
	tests := []struct {
		cfg     Config
		want    Config
		wantErr string
	}{
		{Config{}, Config{PollInterval: 500 * time.Millisecond, ChangesPerPoll: 10000}, ""},
		{Config{PollInterval: time.Second, ChangesPerPoll: 5}, Config{PollInterval: time.Second, ChangesPerPoll: 5}, ""},
		{Config{PollInterval: -1}, Config{PollInterval: 500 * time.Millisecond, ChangesPerPoll: 10000}, "poll_interval"},
		{Config{ChangesPerPoll: -1}, Config{PollInterval: 500 * time.Millisecond, ChangesPerPoll: 10000}, "changes_per_poll"},
	}
	for _, tt := range tests {
		if got := tt.cfg.withDefaults(); got != tt.want {
			t.Errorf("%+v.withDefaults() = %+v, want %+v", tt.cfg, got, tt.want)
		}
		err := tt.cfg.Validate()
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%+v.Validate() = %v, want an error naming %q", tt.cfg, err, tt.wantErr)
		}
	}
}

func TestLoad(t *testing.T) {
	es := []Entry{
		user(Blacklist, "u-1", "opt_out"),
		token(Blacklist, IOS, "aaaa", "invalid_token"),
		token(Whitelist, Android, "bbbb", "test_device"),
		user(Whitelist, "u-2", ""),
	}
	l, src := setup(t, Config{}, es...)
	if l.Loaded() {
		t.Fatal("Loaded() before Load")
	}
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !l.Loaded() || l.Rev() != 4 || l.Len(Blacklist) != 2 || l.Len(Whitelist) != 2 || l.Len("graylist") != 0 {
		t.Errorf("Loaded() = %v, Rev() = %d, Len = %d, %d; want true, 4, 2, 2",
			l.Loaded(), l.Rev(), l.Len(Blacklist), l.Len(Whitelist))
	}
	for _, e := range es {
		if r, ok := in(l, e); !ok || r != e.Reason {
			t.Errorf("%v: %q, %v; want %q, true", e.Key(), r, ok, e.Reason)
		}
	}
	if _, ok := l.set(Whitelist).Lookup(User, "", "u-1"); ok {
		t.Error("a blacklisted user is on the whitelist")
	}

	// Load again replaces both lists.
	src.replace(Blacklist, user(Blacklist, "u-9", "abuse"))
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.Len(Blacklist) != 1 || l.Rev() != 5 {
		t.Errorf("Len(Blacklist) = %d, Rev() = %d; want 1, 5", l.Len(Blacklist), l.Rev())
	}
}

func TestLoadErrors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name   string
		adjust func(*memSource)
	}{
		{"rev", func(m *memSource) { m.listRev = func() error { return boom } }},
		{"blacklist", func(m *memSource) {
			m.eachEntry = func(n Name) error {
				if n == Blacklist {
					return boom
				}
				return nil
			}
		}},
		{"whitelist", func(m *memSource) {
			m.eachEntry = func(n Name) error {
				if n == Whitelist {
					return boom
				}
				return nil
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, src := setup(t, Config{}, user(Blacklist, "u-1", "x"), user(Whitelist, "u-2", "y"))
			tt.adjust(src)
			if err := l.Load(context.Background()); !errors.Is(err, boom) {
				t.Fatalf("Load() = %v, want %v", err, boom)
			}
			// Nothing changed: neither list is swapped in alone.
			if l.Loaded() || l.Rev() != 0 || l.Len(Blacklist) != 0 || l.Len(Whitelist) != 0 {
				t.Errorf("after a failed Load: Loaded() = %v, Rev() = %d, Len = %d, %d",
					l.Loaded(), l.Rev(), l.Len(Blacklist), l.Len(Whitelist))
			}
		})
	}
}

// TestLoadReadsRevFirst: a change made while Load scans the lists is
// applied by the next poll, even if the scan missed it.
func TestLoadReadsRevFirst(t *testing.T) {
	l, src := setup(t, Config{}, user(Blacklist, "u-1", "x"))
	late := user(Blacklist, "u-late", "y")
	var once sync.Once
	src.eachEntry = func(Name) error {
		// A change lands after ListRev, and the scan does not see it.
		once.Do(func() { src.logChange(Change{Op: OpAdd, Entry: late}) })
		return nil
	}
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.Rev() != 1 {
		t.Fatalf("Rev() = %d, want 1: the revision read before the scan", l.Rev())
	}
	if err := l.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := in(l, late); !ok || l.Rev() != 2 {
		t.Errorf("late change applied: %v, Rev() = %d; want true, 2", ok, l.Rev())
	}
}

func TestApplyChanges(t *testing.T) {
	u1, u2 := user(Blacklist, "u-1", "opt_out"), user(Blacklist, "u-2", "abuse")
	tk := token(Blacklist, IOS, "aaaa", "invalid_token")
	w1 := token(Whitelist, Android, "bbbb", "test_device")
	type check struct {
		e    Entry
		want bool
	}
	tests := []struct {
		name    string
		initial []Entry
		change  func(*memSource)
		checks  []check
		wantLen [2]int
	}{
		{"add", nil, func(m *memSource) { m.add(u1, tk, w1) },
			[]check{{u1, true}, {tk, true}, {w1, true}, {u2, false}}, [2]int{2, 1}},
		{"remove", []Entry{u1, u2, w1}, func(m *memSource) { m.remove(u1); m.remove(w1) },
			[]check{{u1, false}, {u2, true}, {w1, false}}, [2]int{1, 0}},
		{"add, remove, add again", nil, func(m *memSource) { m.add(u1); m.remove(u1); m.add(u1) },
			[]check{{u1, true}}, [2]int{1, 0}},
		{"remove, add", []Entry{u1}, func(m *memSource) { m.remove(u1); m.add(u2) },
			[]check{{u1, false}, {u2, true}}, [2]int{1, 0}},
		{"reload", []Entry{u1, w1}, func(m *memSource) { m.replace(Blacklist, u2, tk) },
			[]check{{u1, false}, {u2, true}, {tk, true}, {w1, true}}, [2]int{2, 1}},
		{"reload then changes", []Entry{u1}, func(m *memSource) {
			m.replace(Blacklist, u2)
			m.add(tk)
			m.remove(u2)
		}, []check{{u1, false}, {u2, false}, {tk, true}}, [2]int{1, 0}},
		{"two reloads", []Entry{u1}, func(m *memSource) {
			m.replace(Blacklist, u2)
			m.replace(Blacklist, tk)
			m.replace(Whitelist)
		}, []check{{u1, false}, {u2, false}, {tk, true}}, [2]int{1, 0}},
		{"unknown list and op are skipped", []Entry{u1}, func(m *memSource) {
			m.logChange(Change{Op: OpAdd, Entry: Entry{List: "graylist", Kind: User, Value: "u-3"}})
			m.logChange(Change{Op: "purge", Entry: Entry{List: Blacklist}})
			m.add(u2)
		}, []check{{u1, true}, {u2, true}}, [2]int{2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Pages of 2 changes, so that some runs take several.
			l, src := setup(t, Config{ChangesPerPoll: 2}, tt.initial...)
			if err := l.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
			tt.change(src)
			if err := l.poll(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, c := range tt.checks {
				if _, ok := in(l, c.e); ok != c.want {
					t.Errorf("%s %v: in = %v, want %v", c.e.List, c.e.Key(), ok, c.want)
				}
			}
			if got := [2]int{l.Len(Blacklist), l.Len(Whitelist)}; got != tt.wantLen {
				t.Errorf("Len = %v, want %v", got, tt.wantLen)
			}
			want, _ := src.ListRev(context.Background())
			if l.Rev() != want {
				t.Errorf("Rev() = %d, want %d", l.Rev(), want)
			}
		})
	}
}

// TestReloadFailure: a reload that fails stops the poll there, and the
// next poll takes it up again.
func TestReloadFailure(t *testing.T) {
	u1, u2, u3 := user(Blacklist, "u-1", ""), user(Blacklist, "u-2", ""), user(Blacklist, "u-3", "")
	l, src := setup(t, Config{}, u1)
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	src.add(u2)                       // rev 2
	src.replace(Blacklist, u3)        // rev 3
	src.add(user(Whitelist, "w", "")) // rev 4
	boom := errors.New("boom")
	var fail atomic.Bool
	fail.Store(true)
	src.eachEntry = func(Name) error {
		if fail.Load() {
			return boom
		}
		return nil
	}
	if err := l.poll(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("poll() = %v, want %v", err, boom)
	}
	if _, ok := in(l, u2); !ok || l.Rev() != 2 {
		t.Errorf("after the failed reload: u-2 in = %v, Rev() = %d; want true, 2", ok, l.Rev())
	}
	fail.Store(false)
	if err := l.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, ok1 := in(l, u1)
	_, ok3 := in(l, u3)
	if ok1 || !ok3 || l.Rev() != 4 || l.Len(Whitelist) != 1 {
		t.Errorf("after the retry: u-1 %v, u-3 %v, Rev() = %d, whitelist %d; want false, true, 4, 1",
			ok1, ok3, l.Rev(), l.Len(Whitelist))
	}
}

// TestRun: Run loads the lists if needed, follows changes at each tick,
// logs errors and retries, and stops with its context.
func TestRun(t *testing.T) {
	l, src := setup(t, Config{PollInterval: 5 * time.Millisecond}, user(Blacklist, "u-1", "x"))
	boom := errors.New("store down")
	var failures atomic.Int64
	failures.Store(3)
	src.listChanges = func(int64) error {
		if failures.Add(-1) >= 0 {
			return boom
		}
		return nil
	}
	run(t, l)
	testwait.For(t, 5*time.Second, "the lists to load", l.Loaded)
	src.add(user(Blacklist, "u-2", "y"))
	testwait.For(t, 5*time.Second, "u-2 after the store is back", func() bool {
		_, ok := in(l, user(Blacklist, "u-2", ""))
		return ok
	})
	src.replace(Blacklist, user(Blacklist, "u-3", "z"))
	testwait.For(t, 5*time.Second, "the reload", func() bool { return l.Len(Blacklist) == 1 && l.Rev() == 3 })
}

// TestRunRetriesLoad: Run keeps trying to load lists the Source cannot
// give yet.
func TestRunRetriesLoad(t *testing.T) {
	l, src := setup(t, Config{PollInterval: 5 * time.Millisecond}, user(Blacklist, "u-1", "x"))
	var failures atomic.Int64
	failures.Store(2)
	src.listRev = func() error {
		if failures.Add(-1) >= 0 {
			return errors.New("store down")
		}
		return nil
	}
	run(t, l)
	testwait.For(t, 5*time.Second, "the lists to load", func() bool { return l.Loaded() && l.Len(Blacklist) == 1 })
}

// TestPoke: with a poll interval of an hour, a change is applied only
// when Poke asks for it.
func TestPoke(t *testing.T) {
	l, src := setup(t, Config{PollInterval: time.Hour})
	run(t, l)
	testwait.For(t, 5*time.Second, "the lists to load", l.Loaded)
	for i := range 3 {
		e := user(Blacklist, "u-"+strconv.Itoa(i), "")
		src.add(e)
		start := time.Now()
		l.Poke()
		l.Poke() // a second poke while one is pending does not block
		testwait.For(t, 5*time.Second, "the poked change", func() bool { _, ok := in(l, e); return ok })
		t.Logf("change %d applied %v after Poke", i, time.Since(start))
	}
}

// TestReloadSwapsAtomically: while a list is reloaded over and over,
// readers only ever see a whole list, old or new, never one being built.
func TestReloadSwapsAtomically(t *testing.T) {
	const n = 2000
	version := func(v int) []Entry {
		es := make([]Entry, n)
		for i := range es {
			es[i] = token(Blacklist, Android, "tok-"+strconv.Itoa(i), "v"+strconv.Itoa(v))
		}
		return es
	}
	l, src := setup(t, Config{PollInterval: time.Millisecond}, version(0)...)
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	run(t, l)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for r := range 2 {
		wg.Go(func() {
			for i := r; !stop.Load(); i++ {
				s := l.set(Blacklist)
				if s.Len() != n {
					if bad.Add(1) < 5 {
						t.Errorf("a blacklist of %d entries in use, want %d", s.Len(), n)
					}
					continue
				}
				// Every entry of the Set seen is there, with one reason.
				want, _ := s.Lookup(Token, Android, "tok-0")
				for j := i % 50; j < n; j += 50 {
					if got, ok := s.Lookup(Token, Android, "tok-"+strconv.Itoa(j)); !ok || got != want {
						if bad.Add(1) < 5 {
							t.Errorf("tok-%d: %q, %v; want %q, true", j, got, ok, want)
						}
					}
				}
				if _, _, blocked := l.Filter(Android, "tok-"+strconv.Itoa(i%n), "", false); !blocked {
					if bad.Add(1) < 5 {
						t.Errorf("tok-%d not blocked", i%n)
					}
				}
			}
		})
	}
	for v := 1; v <= 20; v++ {
		src.replace(Blacklist, version(v)...)
		l.Poke()
		testwait.For(t, 5*time.Second, "reload "+strconv.Itoa(v), func() bool { return l.Rev() >= int64(n+v) })
	}
	stop.Store(true)
	wg.Wait()
	if r, _ := in(l, token(Blacklist, Android, "tok-7", "")); r != "v20" {
		t.Errorf("reason %q, want v20", r)
	}
}

func TestFilter(t *testing.T) {
	const (
		blackUser, blackToken = "u-black", "t-black"
		whiteUser, whiteToken = "u-white", "t-white"
		bothUser, bothToken   = "u-both", "t-both"
		otherUser, otherToken = "u-other", "t-other"
		androidOnly           = "t-android"
	)
	l, _ := setup(t, Config{},
		user(Blacklist, blackUser, "opt_out"),
		token(Blacklist, IOS, blackToken, "invalid_token"),
		token(Blacklist, Android, androidOnly, "abuse"),
		user(Whitelist, whiteUser, "tester"),
		token(Whitelist, IOS, whiteToken, "test_device"),
		user(Blacklist, bothUser, "abuse"),
		user(Whitelist, bothUser, "tester"),
		token(Blacklist, IOS, bothToken, "invalid_token"),
		token(Whitelist, IOS, bothToken, "test_device"),
	)
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                    string
		platform, token, userID string
		test                    bool
		wantList                Name
		wantReason              string
	}{
		{"nobody on a list", IOS, otherToken, otherUser, false, "", ""},
		{"blacklisted user", IOS, otherToken, blackUser, false, Blacklist, "opt_out"},
		{"blacklisted token", IOS, blackToken, otherUser, false, Blacklist, "invalid_token"},
		{"blacklisted token, no user id", IOS, blackToken, "", false, Blacklist, "invalid_token"},
		{"token blacklisted on the other platform", IOS, androidOnly, otherUser, false, "", ""},
		{"token blacklisted on this platform", Android, androidOnly, otherUser, false, Blacklist, "abuse"},
		{"user and token blacklisted: the user's reason", IOS, blackToken, blackUser, false, Blacklist, "opt_out"},
		{"a token is not a user id", IOS, otherToken, blackToken, false, "", ""},
		{"a user id is not a token", IOS, blackUser, otherUser, false, "", ""},
		{"whitelist ignored outside test mode", IOS, whiteToken, whiteUser, false, "", ""},
		{"test: whitelisted user", Android, otherToken, whiteUser, true, "", ""},
		{"test: whitelisted token", IOS, whiteToken, otherUser, true, "", ""},
		{"test: whitelisted token, no user id", IOS, whiteToken, "", true, "", ""},
		{"test: whitelisted token on the other platform", Android, whiteToken, otherUser, true, Whitelist, ReasonNotWhitelisted},
		{"test: on no list", IOS, otherToken, otherUser, true, Whitelist, ReasonNotWhitelisted},
		{"test: no user id, no token", IOS, "", "", true, Whitelist, ReasonNotWhitelisted},
		{"test: blacklist wins over a whitelisted user", IOS, otherToken, bothUser, true, Blacklist, "abuse"},
		{"test: blacklist wins over a whitelisted token", IOS, bothToken, otherUser, true, Blacklist, "invalid_token"},
		{"test: blacklisted token, whitelisted user", IOS, blackToken, whiteUser, true, Blacklist, "invalid_token"},
		{"test: blacklisted user, whitelisted token", IOS, whiteToken, blackUser, true, Blacklist, "opt_out"},
		{"empty user id is not looked up", IOS, otherToken, "", false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, reason, blocked := l.Filter(tt.platform, tt.token, tt.userID, tt.test)
			if list != tt.wantList || reason != tt.wantReason || blocked != (tt.wantList != "") {
				t.Errorf("Filter(%q, %q, %q, %v) = %q, %q, %v; want %q, %q, %v",
					tt.platform, tt.token, tt.userID, tt.test, list, reason, blocked,
					tt.wantList, tt.wantReason, tt.wantList != "")
			}
		})
	}
}

func TestFilterBeforeLoad(t *testing.T) {
	l, _ := setup(t, Config{}, user(Blacklist, "u-1", "x"), user(Whitelist, "u-2", "y"))
	if _, _, blocked := l.Filter(IOS, "t", "u-1", false); blocked {
		t.Error("blocked by a list not loaded")
	}
	if list, _, blocked := l.Filter(IOS, "t", "u-2", true); !blocked || list != Whitelist {
		t.Error("a test recipient passed a whitelist not loaded")
	}
}

func TestFilterDoesNotAllocate(t *testing.T) {
	l, _ := setup(t, Config{}, user(Blacklist, "u-1", "x"), user(Whitelist, "u-2", "y"))
	if err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, args := range [][3]string{{IOS, "t", "u-1"}, {IOS, "t", "u-2"}, {Android, "t", ""}, {IOS, "t", "u-9"}} {
		n := testing.AllocsPerRun(100, func() { l.Filter(args[0], args[1], args[2], i%2 == 0) })
		if n != 0 {
			t.Errorf("Filter%v: %v allocations", args, n)
		}
	}
}

func TestGapInChangesReloads(t *testing.T) {
	u1, u2 := user(Blacklist, "u-1", "opt_out"), user(Blacklist, "u-2", "abuse")
	tk := token(Blacklist, IOS, "aaaa", "invalid_token")
	l, src := setup(t, Config{}, u1)
	ctx := context.Background()
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// While this instance is away, changes happen and all but the last are
	// pruned from the log.
	src.add(u2)
	src.remove(u1)
	src.add(tk)
	src.mu.Lock()
	src.log = src.log[len(src.log)-1:]
	src.mu.Unlock()
	if err := l.poll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		e    Entry
		want bool
	}{{u1, false}, {u2, true}, {tk, true}} {
		if _, ok := in(l, c.e); ok != c.want {
			t.Errorf("%v in the list: %v, want %v", c.e.Key(), ok, c.want)
		}
	}
}

func TestSyncAppliesBeforeReturning(t *testing.T) {
	l, src := setup(t, Config{PollInterval: time.Hour})
	ctx := context.Background()
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	u := user(Blacklist, "u-9", "opt_out")
	src.replace(Blacklist, u)
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := in(l, u); !ok {
		t.Error("entry not applied when Sync returned")
	}
}
