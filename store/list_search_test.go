package store

import (
	"context"
	"slices"
	"testing"

	"github.com/pushd/pushd/lists"
)

func TestSearchListEntries(t *testing.T) {
	s, _ := setup(t)
	mustAdd(t, s,
		user(lists.Blacklist, "u-1", "x"), user(lists.Blacklist, "u-10", "x"), user(lists.Blacklist, "u-2", "x"),
		user(lists.Blacklist, "v-1", "x"), user(lists.Blacklist, "가나다", "x"), user(lists.Blacklist, "가나", "x"),
		token(lists.Blacklist, lists.IOS, "abcd", "x"), token(lists.Blacklist, lists.Android, "u-token", "x"),
		user(lists.Whitelist, "u-3", "x"),
	)
	values := func(es []lists.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, string(e.Kind)+":"+e.Platform+":"+e.Value)
		}
		return out
	}
	for _, tc := range []struct {
		prefix string
		limit  int
		want   []string
	}{
		{"u-1", 10, []string{"user::u-1", "user::u-10"}},
		{"u-", 10, []string{"token:android:u-token", "user::u-1", "user::u-10", "user::u-2"}},
		{"u-", 2, []string{"token:android:u-token", "user::u-1"}},
		{"u-2", 10, []string{"user::u-2"}},
		{"가나", 10, []string{"user::가나", "user::가나다"}},
		{"abcd", 10, []string{"token:ios:abcd"}},
		{"w", 10, nil},
	} {
		got, err := s.SearchListEntries(context.Background(), lists.Blacklist, tc.prefix, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(values(got), tc.want) {
			t.Errorf("search %q limit %d: %v, want %v", tc.prefix, tc.limit, values(got), tc.want)
		}
	}
	if _, err := s.SearchListEntries(context.Background(), "greylist", "u", 10); err == nil {
		t.Error("search of an unknown list: no error")
	}
}
