package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/lists"
)

func tokenEntry(list lists.Name, value, reason string) lists.Entry {
	return lists.Entry{List: list, Kind: lists.Token, Platform: lists.Android, Value: value, Reason: reason}
}

// testLists checks admin.ListStore and lists.Source: entries set
// idempotently, and a change log whose revisions have no gaps, even
// for a reader polling while several instances write.
func testLists(t *testing.T, b Backend, c *Clock) {
	ctx := context.Background()
	ls, src := b.Lists, b.Source
	rev, err := src.ListRev(ctx)
	if err != nil || rev != 0 {
		t.Fatalf("ListRev of an empty store = %d, %v; want 0", rev, err)
	}
	// step does one change and checks the changes it logged: exactly
	// want, at the revs after the last one.
	step := func(name string, n, wantN int, err error, want ...lists.Change) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n != wantN {
			t.Errorf("%s: counted %d, want %d", name, n, wantN)
		}
		got, err := src.ListChanges(ctx, rev, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: changes since %d = %+v, want %+v", name, rev, got, want)
		}
		for i, g := range got {
			w := want[i]
			w.Rev = rev + int64(i) + 1
			g.Entry.CreatedAt = w.Entry.CreatedAt
			if g != w {
				t.Errorf("%s: change %d = %+v, want %+v", name, i, g, w)
			}
		}
		rev += int64(len(got))
		if r, err := src.ListRev(ctx); err != nil || r != rev {
			t.Errorf("%s: ListRev = %d, %v; want %d", name, r, err, rev)
		}
	}
	add := func(e lists.Entry) lists.Change { return lists.Change{Op: lists.OpAdd, Entry: e} }
	remove := func(e lists.Entry) lists.Change { return lists.Change{Op: lists.OpRemove, Entry: e} }

	a := tokenEntry(lists.Blacklist, "tok-a", "opt_out")
	bb := tokenEntry(lists.Blacklist, "tok-b", "invalid_token")
	u := lists.Entry{List: lists.Blacklist, Kind: lists.User, Value: "user-1", Reason: "abuse"}
	n, err := ls.AddListEntries(ctx, []lists.Entry{a, bb, u})
	step("add three", n, 3, err, add(a), add(bb), add(u))
	n, err = ls.AddListEntries(ctx, []lists.Entry{a, bb, u})
	step("add the same again", n, 0, err)
	a2 := a
	a2.Reason = "abuse"
	n, err = ls.AddListEntries(ctx, []lists.Entry{a2, bb})
	step("a new reason", n, 0, err, add(a2))
	cc := tokenEntry(lists.Blacklist, "tok-c", "first")
	c2 := cc
	c2.Reason = "last"
	n, err = ls.AddListEntries(ctx, []lists.Entry{cc, c2})
	step("one entry given twice", n, 1, err, add(c2))
	n, err = ls.AddListEntries(ctx, []lists.Entry{a, {List: "greylist", Kind: lists.User, Value: "x"}})
	if !errors.Is(err, lists.ErrInvalid) {
		t.Errorf("an invalid entry: %v, want lists.ErrInvalid", err)
	}
	step("refused", n, 0, nil)
	n, err = ls.RemoveListEntries(ctx, lists.Blacklist, []lists.Key{bb.Key(), {Kind: lists.User, Value: "nobody"}})
	step("remove one and a stranger", n, 1, err, remove(bb))
	n, err = ls.RemoveListEntries(ctx, lists.Blacklist, []lists.Key{bb.Key()})
	step("remove again", n, 0, err)
	// Values that byte order and a language's collation sort apart.
	var white []lists.Entry
	for _, v := range []string{"testa", "test_a", "Test-B", "test-a", "tesT"} {
		white = append(white, tokenEntry(lists.Whitelist, v, "test_device"))
	}
	n, err = ls.ImportList(ctx, lists.Whitelist, white, true)
	step("import", n, len(white), err, lists.Change{Op: lists.OpReload, Entry: lists.Entry{List: lists.Whitelist}})
	page, err := ls.ListEntries(ctx, lists.Whitelist, lists.Key{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	byteOrder(t, "ListEntries", page, func(e lists.Entry) string { return e.Value }, "[Test-B tesT test-a test_a testa]")

	// The entries as the admin module and the indexes read them.
	wantKeys := []lists.Key{a.Key(), cc.Key(), u.Key()} // (kind, platform, value) order
	var got []lists.Key
	after := lists.Key{}
	for {
		page, err := ls.ListEntries(ctx, lists.Blacklist, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			got = append(got, e.Key())
		}
		after = page[len(page)-1].Key()
	}
	if fmt.Sprint(got) != fmt.Sprint(wantKeys) {
		t.Errorf("ListEntries pages = %v, want %v", got, wantKeys)
	}
	if n, err := ls.CountListEntries(ctx, lists.Blacklist); err != nil || n != 3 {
		t.Errorf("CountListEntries = %d, %v; want 3", n, err)
	}
	reasons := map[lists.Key]string{}
	if err := src.EachEntry(ctx, lists.Blacklist, func(e lists.Entry) error {
		reasons[e.Key()] = e.Reason
		if !e.CreatedAt.Equal(c.Now()) {
			t.Errorf("entry %v: CreatedAt %v, want the store's clock %v", e.Key(), e.CreatedAt, c.Now())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(reasons) != 3 || reasons[a.Key()] != "abuse" || reasons[cc.Key()] != "last" {
		t.Errorf("EachEntry = %v", reasons)
	}

	// Several instances write at once while a reader polls: every poll
	// continues exactly where the last ended, and sees every change.
	p := peer(t, b, c)
	const writers, each = 4, 15
	var (
		wg       sync.WaitGroup
		finished = make(chan struct{})
	)
	for i := range writers {
		ls := []admin.ListStore{b.Lists, p.Lists}[i%2]
		wg.Go(func() {
			for j := range each {
				if _, err := ls.AddListEntries(ctx, []lists.Entry{tokenEntry(lists.Blacklist, fmt.Sprintf("w%d-%d", i, j), "race")}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(finished) }()
	defer func() { <-finished }()
	seen := rev
	final := rev + writers*each
	for polls := 0; seen < final; polls++ {
		var done bool
		select {
		case <-finished:
			done = true
		default:
		}
		changes, err := p.Source.ListChanges(ctx, seen, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range changes {
			if ch.Rev != seen+1 {
				t.Fatalf("poll %d: rev %d after %d: a gap", polls, ch.Rev, seen)
			}
			seen = ch.Rev
		}
		if done && len(changes) == 0 {
			t.Fatalf("writers done, changes stop at rev %d, want %d", seen, final)
		}
	}
	<-finished
	if n, err := ls.CountListEntries(ctx, lists.Blacklist); err != nil || n != 3+writers*each {
		t.Errorf("after the writers: CountListEntries = %d, %v; want %d", n, err, 3+writers*each)
	}
}
