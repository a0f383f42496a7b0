package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pushd/pushd/lists"
)

func user(list lists.Name, id, reason string) lists.Entry {
	return lists.Entry{List: list, Kind: lists.User, Value: id, Reason: reason}
}

func token(list lists.Name, platform, tok, reason string) lists.Entry {
	return lists.Entry{List: list, Kind: lists.Token, Platform: platform, Value: tok, Reason: reason}
}

func mustAdd(t *testing.T, s *Store, entries ...lists.Entry) int {
	t.Helper()
	n, err := s.AddListEntries(context.Background(), entries)
	if err != nil {
		t.Fatalf("AddListEntries: %v", err)
	}
	return n
}

func mustImport(t *testing.T, s *Store, list lists.Name, entries []lists.Entry, replace bool) int {
	t.Helper()
	n, err := s.ImportList(context.Background(), list, entries, replace)
	if err != nil {
		t.Fatalf("ImportList: %v", err)
	}
	return n
}

func mustRev(t *testing.T, s *Store) int64 {
	t.Helper()
	rev, err := s.ListRev(context.Background())
	if err != nil {
		t.Fatalf("ListRev: %v", err)
	}
	return rev
}

// changesSince reads every change above since, a page at a time.
func changesSince(t *testing.T, s *Store, since int64) []lists.Change {
	t.Helper()
	var all []lists.Change
	for {
		page, err := s.ListChanges(context.Background(), since, 100)
		if err != nil {
			t.Fatalf("ListChanges(%d): %v", since, err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		since = page[len(page)-1].Rev
	}
}

// listContents reads a list with EachEntry, by key.
func listContents(t *testing.T, s *Store, list lists.Name) map[lists.Key]lists.Entry {
	t.Helper()
	m := map[lists.Key]lists.Entry{}
	err := s.EachEntry(context.Background(), list, func(e lists.Entry) error {
		if _, dup := m[e.Key()]; dup {
			t.Errorf("EachEntry gave %v twice", e.Key())
		}
		if e.List != list {
			t.Errorf("EachEntry(%s) gave an entry of %s", list, e.List)
		}
		m[e.Key()] = e
		return nil
	})
	if err != nil {
		t.Fatalf("EachEntry(%s): %v", list, err)
	}
	return m
}

// reasons returns a list's entries as "kind/platform/value=reason".
func reasons(t *testing.T, s *Store, list lists.Name) []string {
	t.Helper()
	var out []string
	for k, e := range listContents(t, s, list) {
		out = append(out, fmt.Sprintf("%s/%s/%s=%s", k.Kind, k.Platform, k.Value, e.Reason))
	}
	slices.Sort(out)
	return out
}

// change is a lists.Change written short, for comparing.
func change(rev int64, op lists.Op, e lists.Entry) lists.Change {
	e.CreatedAt = time.Time{}
	if op == lists.OpReload {
		e = lists.Entry{List: e.List}
	}
	return lists.Change{Rev: rev, Op: op, Entry: e}
}

func assertChanges(t *testing.T, got, want []lists.Change) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("changes:\n got %+v\nwant %+v", got, want)
	}
}

func TestListMigrationFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pushd.db")

	// A store as pushd with only migration 0001 left it, with a campaign.
	v1, err := fs.ReadFile(migrationFiles, "migrations/0001_campaigns.sql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqliteURI(path, false))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	applied, err := migrate(ctx, db, fstest.MapFS{"migrations/0001_campaigns.sql": file(string(v1))}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(applied, []int64{1}) {
		t.Fatalf("applied %v, want [1]", applied)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO campaigns (id, status, created_at, updated_at, rev) VALUES ('old', 'running', 0, 0, 1)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := reopen(t, &testBundle{path: path, dsn: path, clock: newClock()})
	var versions []int64
	for _, r := range migrationRows(t, s) {
		versions = append(versions, r.version)
	}
	if len(versions) < 2 || !slices.Equal(versions[:2], []int64{1, 2}) {
		t.Errorf("schema versions = %v, want 1, 2 and any later ones", versions)
	}
	if _, err := s.Campaign(ctx, "old"); err != nil {
		t.Errorf("campaign of version 1: %v", err)
	}
	if rev := mustRev(t, s); rev != 0 {
		t.Errorf("ListRev = %d, want 0", rev)
	}
	if n := mustAdd(t, s, user(lists.Blacklist, "u1", "opt_out")); n != 1 {
		t.Errorf("added %d, want 1", n)
	}
	if rev := mustRev(t, s); rev != 1 {
		t.Errorf("ListRev = %d, want 1", rev)
	}
}

func TestAddAndRemoveListEntries(t *testing.T) {
	const bl, wl = lists.Blacklist, lists.Whitelist
	type step struct {
		name        string
		add         []lists.Entry
		remove      []lists.Key // from the blacklist
		wantN       int         // added or removed
		wantChanges []lists.Change
		wantBL      []string
	}
	u1 := user(bl, "u1", "opt_out")
	t1 := token(bl, lists.IOS, "t1", "invalid_token")
	w1 := user(wl, "u1", "test_device")
	u1Abuse := user(bl, "u1", "abuse")
	u2 := user(bl, "u2", "opt_out")
	steps := []step{
		{
			name:  "new entries",
			add:   []lists.Entry{u1, t1, w1},
			wantN: 3,
			wantChanges: []lists.Change{
				change(1, lists.OpAdd, u1), change(2, lists.OpAdd, t1), change(3, lists.OpAdd, w1),
			},
			wantBL: []string{"token/ios/t1=invalid_token", "user//u1=opt_out"},
		},
		{
			name:   "the same again",
			add:    []lists.Entry{t1, u1},
			wantN:  0,
			wantBL: []string{"token/ios/t1=invalid_token", "user//u1=opt_out"},
		},
		{
			name:        "new reason and a new entry",
			add:         []lists.Entry{t1, u1Abuse, u2},
			wantN:       1,
			wantChanges: []lists.Change{change(4, lists.OpAdd, u1Abuse), change(5, lists.OpAdd, u2)},
			wantBL:      []string{"token/ios/t1=invalid_token", "user//u1=abuse", "user//u2=opt_out"},
		},
		{
			name:        "an entry twice in one call",
			add:         []lists.Entry{user(bl, "u3", "a"), user(bl, "u3", "b")},
			wantN:       1,
			wantChanges: []lists.Change{change(6, lists.OpAdd, user(bl, "u3", "b"))},
			wantBL:      []string{"token/ios/t1=invalid_token", "user//u1=abuse", "user//u2=opt_out", "user//u3=b"},
		},
		{
			name:   "remove",
			remove: []lists.Key{t1.Key(), {Kind: lists.User, Value: "nobody"}, u1.Key(), t1.Key()},
			wantN:  2,
			// In the order given, with the reason the entry had.
			wantChanges: []lists.Change{change(7, lists.OpRemove, t1), change(8, lists.OpRemove, u1Abuse)},
			wantBL:      []string{"user//u2=opt_out", "user//u3=b"},
		},
		{
			name:   "remove what is not there",
			remove: []lists.Key{t1.Key(), {Kind: lists.Token, Platform: lists.Android, Value: "t1"}},
			wantN:  0,
			wantBL: []string{"user//u2=opt_out", "user//u3=b"},
		},
		{
			name:        "add back what was removed",
			add:         []lists.Entry{t1},
			wantN:       1,
			wantChanges: []lists.Change{change(9, lists.OpAdd, t1)},
			wantBL:      []string{"token/ios/t1=invalid_token", "user//u2=opt_out", "user//u3=b"},
		},
	}

	s, b := setup(t)
	ctx := context.Background()
	created := map[lists.Key]time.Time{}
	var rev int64
	for _, st := range steps {
		now := b.clock.Advance(time.Minute)
		var (
			n   int
			err error
		)
		if st.add != nil {
			n, err = s.AddListEntries(ctx, st.add)
		} else {
			n, err = s.RemoveListEntries(ctx, bl, st.remove)
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if n != st.wantN {
			t.Errorf("%s: n = %d, want %d", st.name, n, st.wantN)
		}
		assertChanges(t, changesSince(t, s, rev), st.wantChanges)
		rev += int64(len(st.wantChanges))
		if got := mustRev(t, s); got != rev {
			t.Errorf("%s: ListRev = %d, want %d", st.name, got, rev)
		}
		if got := reasons(t, s, bl); !slices.Equal(got, st.wantBL) {
			t.Errorf("%s: blacklist = %q, want %q", st.name, got, st.wantBL)
		}
		// created_at: set when an entry is new, kept when its reason
		// changes.
		for k, e := range listContents(t, s, bl) {
			want, ok := created[k]
			if !ok {
				want = now
				created[k] = now
			}
			if !e.CreatedAt.Equal(want) {
				t.Errorf("%s: %v created at %v, want %v", st.name, k, e.CreatedAt, want)
			}
		}
		for _, k := range st.remove {
			delete(created, k)
		}
	}
	if got := reasons(t, s, wl); !slices.Equal(got, []string{"user//u1=test_device"}) {
		t.Errorf("whitelist = %q", got)
	}
}

func TestAddListEntriesRefusesInvalid(t *testing.T) {
	good := user(lists.Blacklist, "u1", "opt_out")
	tests := []struct {
		name string
		bad  lists.Entry
	}{
		{name: "unknown list", bad: user("greylist", "u2", "")},
		{name: "unknown kind", bad: lists.Entry{List: lists.Blacklist, Kind: "device", Value: "x"}},
		{name: "token without platform", bad: token(lists.Blacklist, "", "t", "")},
		{name: "user with platform", bad: lists.Entry{List: lists.Blacklist, Kind: lists.User, Platform: lists.IOS, Value: "u"}},
		{name: "empty value", bad: user(lists.Blacklist, "", "")},
		{name: "control character", bad: user(lists.Blacklist, "u\n2", "")},
		{name: "long reason", bad: user(lists.Blacklist, "u2", strings.Repeat("r", lists.MaxReasonLength+1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := setup(t)
			_, err := s.AddListEntries(context.Background(), []lists.Entry{good, good, tt.bad, good})
			if !errors.Is(err, lists.ErrInvalid) || !strings.Contains(err.Error(), "entry 2") {
				t.Fatalf("AddListEntries = %v, want an error naming entry 2, wrapping lists.ErrInvalid", err)
			}
			if n, err := s.CountListEntries(context.Background(), lists.Blacklist); err != nil || n != 0 {
				t.Errorf("CountListEntries = %d, %v, want 0: nothing written", n, err)
			}
			if rev := mustRev(t, s); rev != 0 {
				t.Errorf("ListRev = %d, want 0", rev)
			}
		})
	}
}

func TestListChangesPaging(t *testing.T) {
	s, _ := setup(t)
	var entries []lists.Entry
	for i := range 25 {
		entries = append(entries, user(lists.Blacklist, fmt.Sprintf("u%02d", i), ""))
	}
	mustAdd(t, s, entries...)

	revs := func(from, to int64) []int64 {
		var r []int64
		for v := from; v <= to; v++ {
			r = append(r, v)
		}
		return r
	}
	tests := []struct {
		name  string
		since int64
		limit int
		want  []int64
	}{
		{name: "from the start", since: 0, limit: 10, want: revs(1, 10)},
		{name: "middle", since: 10, limit: 10, want: revs(11, 20)},
		{name: "last partial page", since: 20, limit: 10, want: revs(21, 25)},
		{name: "caught up", since: 25, limit: 10, want: nil},
		{name: "beyond", since: 99, limit: 10, want: nil},
		{name: "negative since", since: -5, limit: 3, want: revs(1, 3)},
		{name: "limit above the total", since: 0, limit: 1000, want: revs(1, 25)},
		{name: "limit 0 is clamped to 1", since: 4, limit: 0, want: []int64{5}},
		{name: "negative limit is clamped to 1", since: 4, limit: -1, want: []int64{5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, err := s.ListChanges(context.Background(), tt.since, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for i, c := range page {
				got = append(got, c.Rev)
				if want := entries[c.Rev-1]; c.Op != lists.OpAdd || c.Entry != want {
					t.Errorf("change %d = %+v, want add of %+v", i, c, want)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("revs = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestImportList(t *testing.T) {
	const bl, wl = lists.Blacklist, lists.Whitelist
	tests := []struct {
		name         string
		entries      []lists.Entry
		replace      bool
		wantImported int
		wantErr      string // and nothing changes
		wantBL       []string
		wantReload   bool
	}{
		{
			name:         "merge",
			entries:      []lists.Entry{user(bl, "a", "new"), token(bl, lists.Android, "c", "opt_out")},
			wantImported: 2,
			wantBL:       []string{"token/android/c=opt_out", "user//a=new", "user//b=old"},
			wantReload:   true,
		},
		{
			name:         "replace",
			entries:      []lists.Entry{user(bl, "a", "new"), token(bl, lists.Android, "c", "opt_out")},
			replace:      true,
			wantImported: 2,
			wantBL:       []string{"token/android/c=opt_out", "user//a=new"},
			wantReload:   true,
		},
		{
			name:         "duplicates count once, the last reason wins",
			entries:      []lists.Entry{user(bl, "c", "1"), user(bl, "a", "x"), user(bl, "c", "2"), user(bl, "c", "3")},
			replace:      true,
			wantImported: 2,
			wantBL:       []string{"user//a=x", "user//c=3"},
			wantReload:   true,
		},
		{
			name:    "an invalid entry in the middle",
			entries: []lists.Entry{user(bl, "c", ""), user(bl, "d", ""), token(bl, "windows", "t", ""), user(bl, "e", "")},
			replace: true,
			wantErr: "entry 2",
		},
		{
			name:    "an entry of the other list",
			entries: []lists.Entry{user(bl, "c", ""), user(wl, "d", "")},
			wantErr: "entry 1",
		},
		{
			name:   "merge nothing",
			wantBL: []string{"user//a=old", "user//b=old"},
		},
		{
			name:       "replace with nothing",
			replace:    true,
			wantBL:     nil,
			wantReload: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, b := setup(t)
			ctx := context.Background()
			mustAdd(t, s, user(bl, "a", "old"), user(bl, "b", "old"), user(wl, "w", "test"))
			old := listContents(t, s, bl)
			rev := mustRev(t, s)
			b.clock.Advance(time.Hour)

			n, err := s.ImportList(ctx, bl, tt.entries, tt.replace)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, lists.ErrInvalid) {
					t.Fatalf("ImportList = %v, want an error containing %q wrapping lists.ErrInvalid", err, tt.wantErr)
				}
				tt.wantBL = []string{"user//a=old", "user//b=old"}
			} else if err != nil {
				t.Fatalf("ImportList: %v", err)
			}
			if n != tt.wantImported {
				t.Errorf("imported %d, want %d", n, tt.wantImported)
			}
			if got := reasons(t, s, bl); !slices.Equal(got, tt.wantBL) {
				t.Errorf("blacklist = %q, want %q", got, tt.wantBL)
			}
			if got := reasons(t, s, wl); !slices.Equal(got, []string{"user//w=test"}) {
				t.Errorf("whitelist = %q, want it untouched", got)
			}
			var want []lists.Change
			if tt.wantReload {
				want = []lists.Change{change(rev+1, lists.OpReload, lists.Entry{List: bl})}
			}
			assertChanges(t, changesSince(t, s, rev), want)

			// A merge keeps created_at; a replace starts afresh.
			for k, e := range listContents(t, s, bl) {
				want := b.clock.Now()
				if o, ok := old[k]; ok && (!tt.replace || tt.wantErr != "") {
					want = o.CreatedAt
				}
				if !e.CreatedAt.Equal(want) {
					t.Errorf("%v created at %v, want %v", k, e.CreatedAt, want)
				}
			}
		})
	}
}

// manyEntries returns n distinct entries of list in random order, users
// and tokens of both platforms, with random values.
func manyEntries(list lists.Name, n int, seed uint64) []lists.Entry {
	r := rand.New(rand.NewPCG(seed, 1))
	const hex = "0123456789abcdef"
	randHex := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = hex[r.IntN(len(hex))]
		}
		return string(b)
	}
	entries := make([]lists.Entry, n)
	for i := range entries {
		// The index keeps values distinct; the random part puts them
		// out of order.
		switch i % 10 {
		case 0:
			entries[i] = user(list, fmt.Sprintf("%s-%d", randHex(8), i), "opt_out")
		case 1, 3, 5, 7:
			entries[i] = token(list, lists.IOS, fmt.Sprintf("%s%08x", randHex(56), i), "invalid_token")
		default:
			// FCM registration tokens are about 160 characters.
			entries[i] = token(list, lists.Android, fmt.Sprintf("%s:APA91b%s%08x", randHex(22), randHex(126), i), "invalid_token")
		}
	}
	return entries
}

func TestImportListChunks(t *testing.T) {
	for _, n := range []int{1, listChunk, listChunk + 1, 2*listChunk + 234} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s, _ := setup(t)
			entries := manyEntries(lists.Whitelist, n, uint64(n))
			if got := mustImport(t, s, lists.Whitelist, entries, false); got != n {
				t.Errorf("imported %d, want %d", got, n)
			}
			got := listContents(t, s, lists.Whitelist)
			if len(got) != n {
				t.Errorf("list holds %d entries, want %d", len(got), n)
			}
			for _, e := range entries {
				if g, ok := got[e.Key()]; !ok || g.Reason != e.Reason {
					t.Fatalf("entry %v missing or wrong: %+v", e.Key(), g)
				}
			}
			if c, err := s.CountListEntries(context.Background(), lists.Whitelist); err != nil || c != n {
				t.Errorf("CountListEntries = %d, %v, want %d", c, err, n)
			}
			assertChanges(t, changesSince(t, s, 0), []lists.Change{change(1, lists.OpReload, lists.Entry{List: lists.Whitelist})})
		})
	}
}

func TestListEntriesPaging(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	const n = 1234
	mustImport(t, s, lists.Blacklist, manyEntries(lists.Blacklist, n, 7), false)
	mustAdd(t, s, user(lists.Whitelist, "w", "")) // not in the pages

	keyLess := func(a, b lists.Key) bool {
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Platform != b.Platform {
			return a.Platform < b.Platform
		}
		return a.Value < b.Value
	}
	for _, tt := range []struct {
		limit, wantPage int
		pages           int // 0: to the end
	}{
		{limit: 7, wantPage: 7},
		{limit: 1000, wantPage: 1000},
		{limit: 5000, wantPage: MaxListPage},
		{limit: 1, wantPage: 1, pages: 20},
		{limit: 0, wantPage: 1, pages: 20},
		{limit: -3, wantPage: 1, pages: 20},
	} {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			seen := map[lists.Key]bool{}
			var after lists.Key
			for p := 1; tt.pages == 0 || p <= tt.pages; p++ {
				page, err := s.ListEntries(ctx, lists.Blacklist, after, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				if len(page) > tt.wantPage || (len(page) < tt.wantPage && len(seen)+len(page) != n) {
					t.Fatalf("page of %d entries, want %d (or the rest)", len(page), tt.wantPage)
				}
				for _, e := range page {
					k := e.Key()
					if e.List != lists.Blacklist || seen[k] || !keyLess(after, k) {
						t.Fatalf("entry %+v after %v: wrong list, repeated or out of order", e, after)
					}
					seen[k] = true
					after = k
				}
			}
			want := n
			if tt.pages > 0 {
				want = min(n, tt.pages*tt.wantPage)
			}
			if len(seen) != want {
				t.Errorf("pages covered %d entries, want %d", len(seen), want)
			}
		})
	}
}

func TestAddListEntriesConcurrent(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	const (
		writers = 16
		calls   = 5
		own     = 20 // entries per call only this writer adds
		shared  = 10 // entries per call every writer adds
	)
	added := make([]int, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for c := range calls {
				var batch []lists.Entry
				for i := range shared {
					batch = append(batch, token(lists.Blacklist, lists.IOS, fmt.Sprintf("shared-%d-%d", c, i), "invalid_token"))
				}
				for i := range own {
					batch = append(batch, user(lists.Blacklist, fmt.Sprintf("w%d-c%d-%d", w, c, i), "opt_out"))
				}
				n, err := s.AddListEntries(ctx, batch)
				if err != nil {
					errs[w] = err
					return
				}
				added[w] += n
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	want := writers*calls*own + calls*shared
	var total int
	for _, n := range added {
		total += n
	}
	if total != want {
		t.Errorf("added %d in all, want %d: each entry is new exactly once", total, want)
	}
	if n, err := s.CountListEntries(ctx, lists.Blacklist); err != nil || n != want {
		t.Errorf("CountListEntries = %d, %v, want %d", n, err, want)
	}
	changes := changesSince(t, s, 0)
	if len(changes) != want {
		t.Errorf("%d changes, want %d", len(changes), want)
	}
	keys := map[lists.Key]bool{}
	for i, c := range changes {
		if c.Rev != int64(i+1) {
			t.Fatalf("change %d has rev %d: revs must run 1, 2, 3 ... without gaps", i, c.Rev)
		}
		if keys[c.Entry.Key()] {
			t.Errorf("two changes for %v", c.Entry.Key())
		}
		keys[c.Entry.Key()] = true
	}
	if rev := mustRev(t, s); rev != int64(want) {
		t.Errorf("ListRev = %d, want %d", rev, want)
	}
}

func TestPruneListChanges(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	prune := func(before time.Time) int {
		t.Helper()
		n, err := s.PruneListChanges(ctx, before)
		if err != nil {
			t.Fatalf("PruneListChanges: %v", err)
		}
		return n
	}
	start := b.clock.Now()
	if n := prune(start.Add(time.Hour)); n != 0 {
		t.Errorf("pruned %d with no changes, want 0", n)
	}
	mustAdd(t, s, user(lists.Blacklist, "a", ""), user(lists.Blacklist, "b", ""), user(lists.Blacklist, "c", ""))
	b.clock.Advance(time.Hour)
	mustAdd(t, s, user(lists.Blacklist, "d", ""), user(lists.Blacklist, "e", ""))

	steps := []struct {
		name     string
		before   time.Time
		want     int
		wantRevs []int64
	}{
		{name: "nothing that old", before: start, want: 0, wantRevs: []int64{1, 2, 3, 4, 5}},
		{name: "the first hour", before: start.Add(30 * time.Minute), want: 3, wantRevs: []int64{4, 5}},
		{name: "all but the newest", before: start.Add(24 * time.Hour), want: 1, wantRevs: []int64{5}},
		{name: "the newest stays", before: start.Add(24 * time.Hour), want: 0, wantRevs: []int64{5}},
	}
	for _, st := range steps {
		if n := prune(st.before); n != st.want {
			t.Errorf("%s: pruned %d, want %d", st.name, n, st.want)
		}
		var revs []int64
		for _, c := range changesSince(t, s, 0) {
			revs = append(revs, c.Rev)
		}
		if !slices.Equal(revs, st.wantRevs) {
			t.Errorf("%s: revs left %v, want %v", st.name, revs, st.wantRevs)
		}
		if rev := mustRev(t, s); rev != 5 {
			t.Errorf("%s: ListRev = %d, want 5", st.name, rev)
		}
	}
	// Revs go on from the sequence, not from what is left.
	mustAdd(t, s, user(lists.Blacklist, "f", ""))
	if rev := mustRev(t, s); rev != 6 {
		t.Errorf("ListRev after another add = %d, want 6", rev)
	}
}

func TestEachEntryStopsOnError(t *testing.T) {
	s, _ := setup(t)
	mustImport(t, s, lists.Blacklist, manyEntries(lists.Blacklist, 100, 1), false)
	stop := errors.New("stop")
	calls := 0
	err := s.EachEntry(context.Background(), lists.Blacklist, func(lists.Entry) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("EachEntry = %v, want fn's error", err)
	}
	if calls != 3 {
		t.Errorf("fn called %d times, want 3", calls)
	}
	// The read connection went back to the pool: another read works.
	if n, err := s.CountListEntries(context.Background(), lists.Blacklist); err != nil || n != 100 {
		t.Errorf("CountListEntries = %d, %v, want 100", n, err)
	}
}

func TestListsRejectUnknownList(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	const grey lists.Name = "greylist"
	calls := []struct {
		name string
		call func() error
	}{
		{"EachEntry", func() error {
			return s.EachEntry(ctx, grey, func(lists.Entry) error { return nil })
		}},
		{"ListEntries", func() error { _, err := s.ListEntries(ctx, grey, lists.Key{}, 10); return err }},
		{"CountListEntries", func() error { _, err := s.CountListEntries(ctx, grey); return err }},
		{"RemoveListEntries", func() error {
			_, err := s.RemoveListEntries(ctx, grey, []lists.Key{{Kind: lists.User, Value: "u"}})
			return err
		}},
		{"ImportList", func() error { _, err := s.ImportList(ctx, grey, nil, true); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, lists.ErrInvalid) {
				t.Errorf("%s(greylist) = %v, want lists.ErrInvalid", c.name, err)
			}
		})
	}
	if rev := mustRev(t, s); rev != 0 {
		t.Errorf("ListRev = %d, want 0", rev)
	}
}

// benchStore opens a store in a fresh temporary directory.
func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "pushd.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

const benchEntries = 1_000_000

// BenchmarkImportList1M imports a million blacklist entries: into an
// empty store, and replacing a list of a million.
//
//	go test -run '^$' -bench 'List1M' -benchtime 1x ./store/
func BenchmarkImportList1M(b *testing.B) {
	ctx := context.Background()
	entries := manyEntries(lists.Blacklist, benchEntries, 1)
	b.Run("empty", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			s := benchStore(b)
			b.StartTimer()
			if _, err := s.ImportList(ctx, lists.Blacklist, entries, false); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(benchEntries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("replace", func(b *testing.B) {
		s := benchStore(b)
		if _, err := s.ImportList(ctx, lists.Blacklist, manyEntries(lists.Blacklist, benchEntries, 2), false); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.ImportList(ctx, lists.Blacklist, entries, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(benchEntries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}

// BenchmarkEachEntry1M reads a list of a million entries.
func BenchmarkEachEntry1M(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	if _, err := s.ImportList(ctx, lists.Blacklist, manyEntries(lists.Blacklist, benchEntries, 1), false); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		n := 0
		if err := s.EachEntry(ctx, lists.Blacklist, func(lists.Entry) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != benchEntries {
			b.Fatalf("EachEntry gave %d entries, want %d", n, benchEntries)
		}
	}
	b.ReportMetric(float64(benchEntries)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func TestKeyOrder(t *testing.T) {
	const bl = lists.Blacklist
	tests := []struct {
		name    string
		entries []lists.Entry
		want    []int
	}{
		{name: "none", want: []int{}},
		{
			name: "sorted",
			entries: []lists.Entry{
				token(bl, lists.Android, "b", ""), token(bl, lists.IOS, "a", ""), user(bl, "a", ""), user(bl, "b", ""),
			},
			want: []int{0, 1, 2, 3},
		},
		{
			name: "sorted with repeats",
			entries: []lists.Entry{
				token(bl, lists.IOS, "a", "1"), token(bl, lists.IOS, "a", "2"), user(bl, "a", ""), user(bl, "a", ""), user(bl, "a", ""),
			},
			want: []int{1, 4},
		},
		{
			name: "shuffled with repeats",
			entries: []lists.Entry{
				user(bl, "b", ""), token(bl, lists.IOS, "a", ""), user(bl, "a", "1"), token(bl, lists.Android, "z", ""),
				user(bl, "b", ""), user(bl, "a", "2"), token(bl, lists.IOS, "a", ""),
			},
			want: []int{3, 6, 5, 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyOrder(tt.entries); !slices.Equal(got, tt.want) {
				t.Errorf("keyOrder = %v, want %v", got, tt.want)
			}
		})
	}
}

// BenchmarkAddListEntries5k adds 5,000 new entries a call to a list
// that grows by as much each time.
func BenchmarkAddListEntries5k(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	const n = 5000
	entries := manyEntries(lists.Blacklist, n*b.N, 3)
	b.ResetTimer()
	for i := range b.N {
		added, err := s.AddListEntries(ctx, entries[i*n:(i+1)*n])
		if err != nil {
			b.Fatal(err)
		}
		if added != n {
			b.Fatalf("added %d, want %d", added, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkListsLoad1M rebuilds an instance's in-memory index of a
// million-entry blacklist from the store, as pushd does at start and on an
// import (the lists issue: within 5 s).
//
//	go test -run '^$' -bench ListsLoad1M -benchtime 3x ./store/
func BenchmarkListsLoad1M(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	if _, err := s.ImportList(ctx, lists.Blacklist, manyEntries(lists.Blacklist, benchEntries, 1), false); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		l := lists.New(s, nil, lists.Config{})
		if err := l.Load(ctx); err != nil {
			b.Fatal(err)
		}
		if n := l.Len(lists.Blacklist); n != benchEntries {
			b.Fatalf("loaded %d entries, want %d", n, benchEntries)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/load")
}

// BenchmarkListAddFromThreeInstances adds one blacklist entry per write
// from three stores opened on the same database, as three pushd instances
// reporting invalid tokens do: the list revision is taken under the store's
// write lock (PostgreSQL: an advisory lock), so this measures how many
// such changes a cluster can make per second.
// PUSHD_TEST_STORE=postgres runs it on PostgreSQL.
func BenchmarkListAddFromThreeInstances(b *testing.B) {
	_, tb := setup(b)
	stores := make([]*Store, 3)
	for i := range stores {
		stores[i] = reopen(b, tb)
		stores[i].SetClock(time.Now)
	}
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(2) // 2 x GOMAXPROCS goroutines over the three stores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			s := stores[i%3]
			e := lists.Entry{List: lists.Blacklist, Kind: lists.Token, Platform: "ios", Value: fmt.Sprintf("%064x", i), Reason: "invalid_token"}
			if _, err := s.AddListEntries(ctx, []lists.Entry{e}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestWatchListsPokesOnEveryInstancesChange: on PostgreSQL, an instance
// watching list changes is poked once when it starts listening, and again
// for a change another instance commits, without waiting for a poll. On
// SQLite WatchLists has nothing to watch and returns at once.
func TestWatchListsPokesOnEveryInstancesChange(t *testing.T) {
	s, b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	pokes := make(chan struct{}, 10)
	done := make(chan error, 1)
	go func() {
		done <- s.WatchLists(ctx, func() { pokes <- struct{}{} }, slog.New(slog.DiscardHandler))
	}()
	if b.path != "" { // SQLite
		if err := <-done; err != nil {
			t.Fatalf("WatchLists on SQLite: %v", err)
		}
		cancel()
		return
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchLists: %v", err)
		}
	}()
	waitPoke := func(what string) {
		t.Helper()
		select {
		case <-pokes:
		case <-time.After(10 * time.Second):
			t.Fatalf("no poke %s", what)
		}
	}
	waitPoke("when listening starts")
	other := reopen(t, b) // another instance on the same database
	if _, err := other.AddListEntries(context.Background(), []lists.Entry{user(lists.Blacklist, "u1", "opt_out")}); err != nil {
		t.Fatal(err)
	}
	waitPoke("for another instance's change")
}
