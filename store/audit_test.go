package store

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestAuditRoundTrip(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	explicit := time.Date(2026, 1, 2, 3, 4, 5, 678_900_000, time.UTC)

	entries := []AuditEntry{
		{Actor: "alice", Action: "campaign.create", Target: "spring-sale", After: json.RawMessage(`{"status":"running"}`)},
		{Actor: "bob", Action: "campaign.pause", Target: "spring-sale", Before: json.RawMessage(`{"status":"running"}`), After: json.RawMessage(`{"status":"paused"}`)},
		{At: explicit, Actor: "pushd", Action: "blacklist.add", Target: "ios:abcd…", Before: json.RawMessage(`null`)},
		{ID: 999, Actor: "", Action: "campaign.delete", Target: "old", Before: json.RawMessage(`{"id":"old"}`)},
	}
	var times []time.Time
	for _, e := range entries {
		now := b.clock.Advance(time.Second)
		if err := s.Audit(ctx, e); err != nil {
			t.Fatalf("Audit(%+v): %v", e, err)
		}
		if e.At.IsZero() {
			times = append(times, now)
		} else {
			times = append(times, explicit.Truncate(time.Millisecond))
		}
	}

	got, err := s.AuditLog(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries) {
		t.Fatalf("AuditLog returned %d entries, want %d", len(got), len(entries))
	}
	for i, g := range got {
		j := len(entries) - 1 - i // newest first
		w := entries[j]
		if g.ID != int64(j+1) {
			t.Errorf("entry %d: ID = %d, want %d", i, g.ID, j+1)
		}
		if !g.At.Equal(times[j]) {
			t.Errorf("entry %d: At = %v, want %v", i, g.At, times[j])
		}
		if g.Actor != w.Actor || g.Action != w.Action || g.Target != w.Target ||
			string(g.Before) != string(w.Before) || string(g.After) != string(w.After) {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
		if (g.Before == nil) != (w.Before == nil) || (g.After == nil) != (w.After == nil) {
			t.Errorf("entry %d: nil Before/After not kept: got %+v, want %+v", i, g, w)
		}
	}
}

func TestAuditLogLimit(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	const n = DefaultAuditLimit + 5
	for i := range n {
		if err := s.Audit(ctx, AuditEntry{Actor: "a", Action: fmt.Sprint("act", i)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		limit int
		want  int
	}{
		{limit: 1, want: 1},
		{limit: 3, want: 3},
		{limit: n + 10, want: n},
		{limit: 0, want: DefaultAuditLimit},
		{limit: -1, want: DefaultAuditLimit},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			got, err := s.AuditLog(ctx, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want {
				t.Fatalf("AuditLog(%d) returned %d entries, want %d", tt.limit, len(got), tt.want)
			}
			if got[0].Action != fmt.Sprint("act", n-1) {
				t.Errorf("AuditLog(%d)[0] = %q, want the newest", tt.limit, got[0].Action)
			}
		})
	}
}

func TestAuditRejects(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	tests := []struct {
		name string
		e    AuditEntry
	}{
		{"no action", AuditEntry{Actor: "a"}},
		{"bad before", AuditEntry{Action: "x", Before: json.RawMessage(`{`)}},
		{"bad after", AuditEntry{Action: "x", After: json.RawMessage(`nope`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Audit(ctx, tt.e); err == nil {
				t.Error("Audit succeeded, want an error")
			}
		})
	}
	if got, err := s.AuditLog(ctx, 10); err != nil || len(got) != 0 {
		t.Errorf("AuditLog = %v, %v; want empty", got, err)
	}
}

func TestAuditEntriesFilters(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	start := b.clock.Now()
	for i, e := range []AuditEntry{
		{Actor: "a", Action: "campaign.create", Target: "x"},
		{Actor: "b", Action: "campaign.create", Target: "y"},
		{Actor: "a", Action: "campaign.cancel", Target: "x"},
		{Actor: "a", Action: "campaign.create", Target: "z"},
	} {
		e.At = start.Add(time.Duration(i) * time.Minute)
		if err := s.Audit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	targets := func(q AuditQuery) string {
		t.Helper()
		es, err := s.AuditEntries(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out string
		for _, e := range es {
			out += e.Target
		}
		return out
	}
	for _, tt := range []struct {
		name string
		q    AuditQuery
		want string
	}{
		{"all, newest first", AuditQuery{}, "zxyx"},
		{"actor", AuditQuery{Actor: "a"}, "zxx"},
		{"action", AuditQuery{Action: "campaign.create"}, "zyx"},
		{"target and actor", AuditQuery{Target: "x", Actor: "a"}, "xx"},
		{"since until", AuditQuery{Since: start.Add(time.Minute), Until: start.Add(3 * time.Minute)}, "xy"},
		{"first page", AuditQuery{Limit: 2}, "zx"},
		{"next page", AuditQuery{Limit: 2, Before: 3}, "yx"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := targets(tt.q); got != tt.want {
				t.Errorf("targets = %q, want %q", got, tt.want)
			}
		})
	}
}
