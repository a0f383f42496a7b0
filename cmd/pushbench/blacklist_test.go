package main

import (
	"path/filepath"
	"testing"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/store"
)

func TestBlacklistEntries(t *testing.T) {
	const n = 1001
	entries := blacklistEntries(n)
	if len(entries) != n {
		t.Fatalf("%d entries, want %d", len(entries), n)
	}
	count := map[string]int{}
	seen := map[lists.Key]bool{}
	for i, e := range entries {
		if err := e.Validate(); err != nil || e.List != lists.Blacklist {
			t.Fatalf("entry %d %+v: %v", i, e, err)
		}
		if seen[e.Key()] {
			t.Fatalf("entry %d %+v repeated", i, e)
		}
		seen[e.Key()] = true
		count[string(e.Kind)+"/"+e.Platform]++
	}
	if want := map[string]int{"user/": 500, "token/ios": 251, "token/android": 250}; len(count) != len(want) ||
		count["user/"] != want["user/"] || count["token/ios"] != want["token/ios"] || count["token/android"] != want["token/android"] {
		t.Errorf("kinds %v, want %v", count, want)
	}
}

// TestBlacklistStore imports a blacklist, copies its store as runPushd
// does and loads the copy as pushd does: every entry is there, and no
// recipient of a benchmark campaign is blocked.
func TestBlacklistStore(t *testing.T) {
	ctx := t.Context()
	const n = 2000
	bs, err := makeBlacklistStore(ctx, filepath.Join(t.TempDir(), "blacklist", pushdStoreFile), n)
	if err != nil {
		t.Fatal(err)
	}
	if bs.entries != n || bs.users != n/2 || bs.took <= 0 {
		t.Errorf("store %+v", bs)
	}
	dir := t.TempDir()
	if err := bs.copyTo(dir); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(dir, pushdStoreFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ls := lists.New(st, nil, lists.Config{})
	if err := ls.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ls.Len(lists.Blacklist); got != n {
		t.Errorf("the copy holds %d blacklist entries, want %d", got, n)
	}
	blocked := 0
	err = st.EachEntry(ctx, lists.Blacklist, func(e lists.Entry) error {
		if _, _, b := ls.Filter(e.Platform, e.Value, "", false); e.Kind == lists.Token && b {
			blocked++
		}
		if _, _, b := ls.Filter("", "", e.Value, false); e.Kind == lists.User && b {
			blocked++
		}
		return nil
	})
	if err != nil || blocked != n {
		t.Errorf("%d of %d entries block what they name (%v)", blocked, n, err)
	}

	_, campaign := benchTopology()
	o := synth.Options{Campaign: campaign, Recipients: 5000, IOSPercent: 100}
	for i := range o.Recipients {
		r := o.Recipient(i)
		if list, reason, b := ls.Filter(r.Platform.String(), r.Token, r.UserID, false); b {
			t.Fatalf("recipient %d %+v blocked by the %s (%s)", i, r, list, reason)
		}
	}
}
