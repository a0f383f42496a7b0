package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/audit"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
)

// breakAudit makes every audit insert fail, as a full disk or a broken
// audit table would, until the function it returns puts the table back.
// Renaming the table works the same on every backend.
func breakAudit(t *testing.T, s *Store) (repair func()) {
	t.Helper()
	exec := func(q string) {
		t.Helper()
		if _, err := s.w.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`ALTER TABLE audit RENAME TO audit_broken`)
	return func() { exec(`ALTER TABLE audit_broken RENAME TO audit`) }
}

// operatorState describes everything an operator's change may touch: the
// lists, their snapshots and change log, campaign c1 and the rate limits.
func operatorState(t *testing.T, s *Store) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, l := range []lists.Name{lists.Blacklist, lists.Whitelist} {
		snaps, err := s.ListSnapshots(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %v snapshots %+v\n", l, reasons(t, s, l), snaps)
	}
	fmt.Fprintf(&b, "list rev %d\n", mustRev(t, s))
	rec := mustGet(t, s, "c1")
	fmt.Fprintf(&b, "c1 %s %v %s rev %d\n", rec.Status, rec.MessageRate, fmtRate(rec.RateOverride), rec.Rev)
	lim, err := s.RateLimits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "limits %v\n", lim)
	return b.String()
}

// TestAuditedChanges: an operator's change made with an audit.Note writes
// its record in its own transaction; when the record cannot be written,
// the change does not happen (issue 13, item 6).
func TestAuditedChanges(t *testing.T) {
	const created = `"created_at":"2026-11-26T22:00:00Z"`
	bl := lists.Blacklist
	tests := []struct {
		name   string
		seed   func(t *testing.T, s *Store)
		action string
		change func(ctx context.Context, s *Store) error
		target string
		before string // "" for none (SQL NULL)
		after  string
	}{
		{
			name:   "list add",
			seed:   func(t *testing.T, s *Store) { mustAdd(t, s, user(bl, "u-1", "abuse")) },
			action: "list.add",
			change: func(ctx context.Context, s *Store) error {
				_, err := s.AddListEntries(ctx, []lists.Entry{user(bl, "u-1", "opt_out"), token(bl, "ios", "f00d", "abuse")})
				return err
			},
			target: "blacklist",
			before: `{"count":1}`,
			after:  `{"count":2,"added":1,"updated":1,"entries":[{"kind":"user","value":"u-1","platform":"","reason":"opt_out"},{"kind":"token","value":"f00d","platform":"ios","reason":"abuse"}]}`,
		},
		{
			name:   "list remove records the removed entries",
			seed:   func(t *testing.T, s *Store) { mustAdd(t, s, user(bl, "u-1", "abuse"), user(bl, "u-2", "opt_out")) },
			action: "list.remove",
			change: func(ctx context.Context, s *Store) error {
				_, err := s.RemoveListEntries(ctx, bl, []lists.Key{{Kind: lists.User, Value: "u-2"}, {Kind: lists.User, Value: "u-9"}})
				return err
			},
			target: "blacklist",
			before: `{"count":2,"entries":[{"kind":"user","value":"u-2","platform":"","reason":"opt_out",` + created + `}]}`,
			after:  `{"count":1,"removed":1}`,
		},
		{
			name:   "list import, replace, keeps a snapshot",
			seed:   func(t *testing.T, s *Store) { mustAdd(t, s, user(bl, "u-1", "abuse"), user(bl, "u-2", "abuse")) },
			action: "list.import",
			change: func(ctx context.Context, s *Store) error {
				_, err := s.ImportList(ctx, bl, []lists.Entry{user(bl, "u-3", "abuse")}, true)
				return err
			},
			target: "blacklist",
			before: `{"count":2,"snapshot":1}`,
			after:  `{"count":1,"imported":1,"replace":true}`,
		},
		{
			name:   "list import, merge",
			seed:   func(t *testing.T, s *Store) { mustAdd(t, s, user(bl, "u-1", "abuse")) },
			action: "list.import",
			change: func(ctx context.Context, s *Store) error {
				_, err := s.ImportList(ctx, bl, []lists.Entry{user(bl, "u-1", "abuse"), user(bl, "u-3", "abuse")}, false)
				return err
			},
			target: "blacklist",
			before: `{"count":1}`,
			after:  `{"count":2,"imported":2}`,
		},
		{
			name: "list restore",
			seed: func(t *testing.T, s *Store) {
				mustAdd(t, s, user(bl, "u-1", "abuse"))
				mustImport(t, s, bl, []lists.Entry{user(bl, "u-3", "abuse"), user(bl, "u-4", "abuse")}, true) // snapshot 1: u-1
			},
			action: "list.restore",
			change: func(ctx context.Context, s *Store) error {
				_, err := s.RestoreListSnapshot(ctx, bl, 1)
				return err
			},
			target: "blacklist",
			before: `{"count":2,"snapshot":2}`, // the first try rolled its snapshot back, id and all
			after:  `{"count":1,"restored":1}`,
		},
		{
			name:   "campaign pause",
			action: "campaign.pause",
			change: func(ctx context.Context, s *Store) error {
				_, _, err := s.SetCampaignStatus(ctx, "c1", dispatcher.StatusPaused, dispatcher.StatusRunning)
				return err
			},
			target: "c1",
			before: `{"status":"running","message_rate":10,"rate_override":null,"counters":{"received":5,"sent":3,"failed":0,"filtered":0,"dropped":0,"cancelled":0}}`,
			after:  `{"status":"paused","message_rate":10,"rate_override":null,"counters":{"received":5,"sent":3,"failed":0,"filtered":0,"dropped":0,"cancelled":0}}`,
		},
		{
			name:   "campaign rate",
			action: "campaign.rate",
			change: func(ctx context.Context, s *Store) error {
				_, _, err := s.SetCampaignRate(ctx, "c1", ptr(2.5))
				return err
			},
			target: "c1",
			before: `{"status":"running","message_rate":10,"rate_override":null,"counters":{"received":5,"sent":3,"failed":0,"filtered":0,"dropped":0,"cancelled":0}}`,
			after:  `{"status":"running","message_rate":10,"rate_override":2.5,"counters":{"received":5,"sent":3,"failed":0,"filtered":0,"dropped":0,"cancelled":0}}`,
		},
		{
			name:   "limit set",
			action: "limit.set",
			change: func(ctx context.Context, s *Store) error {
				return s.SetRateLimit(ctx, "apns", &dispatcher.LimitSetting{PerSecond: 100, Burst: 10})
			},
			target: "apns",
			after:  `{"per_second":100,"burst":10}`,
		},
		{
			name: "limit cleared",
			seed: func(t *testing.T, s *Store) {
				if err := s.SetRateLimit(context.Background(), "fcm", &dispatcher.LimitSetting{PerSecond: 7, Burst: 1}); err != nil {
					t.Fatal(err)
				}
			},
			action: "limit.set",
			change: func(ctx context.Context, s *Store) error { return s.SetRateLimit(ctx, "fcm", nil) },
			target: "fcm",
			before: `{"per_second":7,"burst":1}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, b := setup(t)
			mustEnsure(t, s, "c1", 10)
			if err := s.AddCampaignCounters(context.Background(), countersOf("c1", 5, 3)); err != nil {
				t.Fatal(err)
			}
			if tt.seed != nil {
				tt.seed(t, s)
			}
			ctx := audit.WithNote(context.Background(), audit.Note{Actor: "operator:1a2b3c4d", Action: tt.action})
			was := operatorState(t, s)

			repair := breakAudit(t, s)
			if err := tt.change(ctx, s); err == nil || !strings.Contains(err.Error(), "audit "+tt.action) {
				t.Fatalf("change with the audit log broken: err = %v, want an audit error", err)
			}
			if now := operatorState(t, s); now != was {
				t.Fatalf("the change stood without its audit record:\nbefore %s\nafter  %s", was, now)
			}
			repair()

			at := b.clock.Advance(time.Minute)
			if err := tt.change(ctx, s); err != nil {
				t.Fatalf("change: %v", err)
			}
			if operatorState(t, s) == was {
				t.Fatal("the change did not happen")
			}
			log, err := s.AuditLog(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(log) != 1 {
				t.Fatalf("%d audit records, want 1: %+v", len(log), log)
			}
			e := log[0]
			if !e.At.Equal(at) || e.Actor != "operator:1a2b3c4d" || e.Action != tt.action || e.Target != tt.target {
				t.Errorf("record %v %s %s %s, want %v operator:1a2b3c4d %s %s", e.At, e.Actor, e.Action, e.Target, at, tt.action, tt.target)
			}
			if string(e.Before) != tt.before || string(e.After) != tt.after {
				t.Errorf("record\nbefore %s\nafter  %s\nwant\nbefore %s\nafter  %s", e.Before, e.After, tt.before, tt.after)
			}
		})
	}
}

// TestUnauditedChanges: without an audit.Note (the dispatcher's own
// writes, the blacklisting of invalid tokens) a change writes no record
// and does not depend on the audit log.
func TestUnauditedChanges(t *testing.T) {
	s, _ := setup(t)
	ctx := context.Background()
	repair := breakAudit(t, s)
	defer repair()
	mustAdd(t, s, user(lists.Blacklist, "u-1", "invalid_token"))
	mustEnsure(t, s, "c1", 10)
	mustStatus(t, s, "c1", dispatcher.StatusFinished)
	if _, err := s.RemoveListEntries(ctx, lists.Blacklist, []lists.Key{{Kind: lists.User, Value: "u-1"}}); err != nil {
		t.Fatal(err)
	}
}

// TestUnchangedWritesNoRecord: a request that changes nothing (adding
// what is there, removing what is not, pausing a paused campaign) is not
// a change and writes no record.
func TestUnchangedWritesNoRecord(t *testing.T) {
	s, _ := setup(t)
	bl := lists.Blacklist
	mustAdd(t, s, user(bl, "u-1", "abuse"))
	mustEnsure(t, s, "c1", 10)
	mustStatus(t, s, "c1", dispatcher.StatusPaused)
	ctx := audit.WithNote(context.Background(), audit.Note{Actor: "a", Action: "x"})
	if _, err := s.AddListEntries(ctx, []lists.Entry{user(bl, "u-1", "abuse")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveListEntries(ctx, bl, []lists.Key{{Kind: lists.User, Value: "u-2"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SetCampaignStatus(ctx, "c1", dispatcher.StatusPaused, dispatcher.StatusRunning, dispatcher.StatusPaused); err != nil {
		t.Fatal(err)
	}
	if log, err := s.AuditLog(context.Background(), 0); err != nil || len(log) != 0 {
		t.Fatalf("AuditLog = %+v, %v; want no records", log, err)
	}
}
