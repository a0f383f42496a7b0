package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

func TestLedger(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	if e, err := s.LedgerEntry(ctx, "k1"); err != nil || !reflect.DeepEqual(e, dispatcher.LedgerEntry{}) {
		t.Fatalf("unknown key: %+v, %v", e, err)
	}
	err := s.RecordLedger(ctx, map[string]dispatcher.LedgerEntry{
		"k1": {Resolved: []byte{0x05}},
		"k2": {Resolved: []byte{0xff, 0x01}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The last write of a run: everything resolved, with its hand-offs.
	final := dispatcher.LedgerEntry{Resolved: []byte{0x07}, Rest: []byte{0x02}, Retry: []byte{0x04}}
	if err := s.RecordLedger(ctx, map[string]dispatcher.LedgerEntry{"k1": final}, nil); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, b)
	for k, want := range map[string]dispatcher.LedgerEntry{"k1": final, "k2": {Resolved: []byte{0xff, 0x01}}} {
		if e, err := s.LedgerEntry(ctx, k); err != nil || !reflect.DeepEqual(e, want) {
			t.Errorf("%s: %+v, %v; want %+v", k, e, err, want)
		}
	}
	if n, err := s.PruneLedger(ctx, b.clock.Now().Add(-time.Minute)); err != nil || n != 0 {
		t.Errorf("prune of older rows: %d, %v", n, err)
	}
	n, err := s.PruneLedger(ctx, b.clock.Now().Add(time.Hour))
	if err != nil || n != 2 {
		t.Errorf("prune: %d, %v", n, err)
	}
	if e, _ := s.LedgerEntry(ctx, "k1"); e.Resolved != nil {
		t.Error("pruned row still there")
	}
}

// The counters of resolved recipients are committed with their ledger
// bits, and a message is counted as received when its row is created:
// once, however often it is recorded.
func TestLedgerWritesTheCountersWithTheBits(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	if _, err := s.EnsureCampaign(ctx, "c", 0); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		isNew, err := s.RecordReceived(ctx, "k1", "c", nil, dispatcher.Counters{Received: 10})
		if err != nil || isNew != want {
			t.Fatalf("record received %d: %v, %v; want %v", i+1, isNew, err, want)
		}
	}
	// Expired at intake: received and dropped, every bit set.
	if _, err := s.RecordReceived(ctx, "k2", "c", []byte{0xff, 0x03}, dispatcher.Counters{Received: 10, Dropped: 10}); err != nil {
		t.Fatal(err)
	}
	err := s.RecordLedger(ctx, map[string]dispatcher.LedgerEntry{"k1": {Resolved: []byte{0x03}}},
		map[string]dispatcher.Counters{"c": {Sent: 1, Filtered: 1}, "unknown": {Sent: 5}})
	if err != nil {
		t.Fatal(err)
	}
	s = reopen(t, b)
	rec, err := s.Campaign(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if want := (dispatcher.Counters{Received: 20, Sent: 1, Filtered: 1, Dropped: 10}); rec.Counters != want {
		t.Errorf("counters %+v, want %+v", rec.Counters, want)
	}
	for k, want := range map[string][]byte{"k1": {0x03}, "k2": {0xff, 0x03}} {
		if e, err := s.LedgerEntry(ctx, k); err != nil || !reflect.DeepEqual(e.Resolved, want) {
			t.Errorf("%s: %+v, %v; want resolved %x", k, e, err, want)
		}
	}
}

// BenchmarkLedgerFlush is one of the dispatcher's 20 ms ledger flushes at
// about 30,000 sends/s: the bitmaps of the batches in progress (32 runs of
// 1000 recipients), each a little further on than at the last flush.
// PUSHD_TEST_STORE=postgres runs it on PostgreSQL.
func BenchmarkLedgerFlush(b *testing.B) {
	s, _ := setup(b)
	s.SetClock(time.Now)
	ctx := context.Background()
	const runs, recipients = 32, 1000
	entries := make(map[string]dispatcher.LedgerEntry, runs)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for r := range runs {
			bits := make([]byte, recipients/8)
			for j := 0; j < (i%recipients)/8; j++ {
				bits[j] = 0xff
			}
			entries[fmt.Sprintf("run-%d-%d", i/recipients, r)] = dispatcher.LedgerEntry{Resolved: bits}
		}
		if err := s.RecordLedger(ctx, entries, nil); err != nil {
			b.Fatal(err)
		}
		clear(entries)
	}
}

// TestLedgerClaims: a claim is taken on a row (created when missing) by
// its first owner; another owner finds it held until it ends, is released
// by the holder's last write, or runs out; renewals extend only the
// holder's claims; the bitmaps are kept throughout.
func TestLedgerClaims(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	now := b.clock.Now().Truncate(time.Millisecond)
	claim := func(key, owner string, at time.Time, lease time.Duration) (dispatcher.LedgerEntry, string) {
		t.Helper()
		e, holder, err := s.ClaimLedger(ctx, key, owner, at, at.Add(lease))
		if err != nil {
			t.Fatal(err)
		}
		return e, holder
	}
	// A missing row: created and claimed.
	if e, holder := claim("k", "a", now, 5*time.Second); holder != "a" || !e.ClaimedUntil.Equal(now.Add(5*time.Second)) || len(e.Resolved) != 0 {
		t.Fatalf("first claim: %+v by %q", e, holder)
	}
	if err := s.RecordLedger(ctx, map[string]dispatcher.LedgerEntry{"k": {Resolved: []byte{0x03}}}, nil); err != nil {
		t.Fatal(err)
	}
	// Held: b gets the row and a's claim, unchanged.
	e, holder := claim("k", "b", now.Add(time.Second), 5*time.Second)
	if holder != "a" || !e.ClaimedUntil.Equal(now.Add(5*time.Second)) || !reflect.DeepEqual(e.Resolved, []byte{0x03}) {
		t.Fatalf("claim of a held row: %+v by %q", e, holder)
	}
	// a renews; b's renewal of a claim it does not hold changes nothing.
	if err := s.RenewClaims(ctx, "a", []string{"k", "missing"}, now.Add(9*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.RenewClaims(ctx, "b", []string{"k"}, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if e, holder := claim("k", "b", now.Add(6*time.Second), 5*time.Second); holder != "a" || !e.ClaimedUntil.Equal(now.Add(9*time.Second)) {
		t.Fatalf("after renewals: %+v by %q, want a's until +9s", e, holder)
	}
	// a claims again (its own): taken, with the new end.
	if _, holder := claim("k", "a", now.Add(7*time.Second), 5*time.Second); holder != "a" {
		t.Fatalf("a's own claim again: holder %q", holder)
	}
	// Runs out: b takes it at its end.
	if e, holder := claim("k", "b", now.Add(12*time.Second), 5*time.Second); holder != "b" || !reflect.DeepEqual(e.Resolved, []byte{0x03}) {
		t.Fatalf("claim at the end of a's: %+v by %q", e, holder)
	}
	// b's last write releases it: a takes it at once.
	final := dispatcher.LedgerEntry{Resolved: []byte{0x0f}, Release: true}
	if err := s.RecordLedger(ctx, map[string]dispatcher.LedgerEntry{"k": final}, nil); err != nil {
		t.Fatal(err)
	}
	if e, holder := claim("k", "a", now.Add(13*time.Second), 5*time.Second); holder != "a" || !reflect.DeepEqual(e.Resolved, []byte{0x0f}) {
		t.Fatalf("claim after the release: %+v by %q", e, holder)
	}
	// A plain read does not show claims; a write without Release keeps it.
	if err := s.RecordLedger(ctx, map[string]dispatcher.LedgerEntry{"k": {Resolved: []byte{0x1f}}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, holder := claim("k", "b", now.Add(14*time.Second), 5*time.Second); holder != "a" {
		t.Fatalf("a write without Release ended the claim: holder %q", holder)
	}
}

// TestLedgerClaimRace: instances claiming one row at once; exactly one
// holds it.
func TestLedgerClaimRace(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	now := b.clock.Now()
	const n = 8
	holders := make(chan string, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, holder, err := s.ClaimLedger(ctx, "k", fmt.Sprintf("owner-%d", i), now, now.Add(time.Minute))
			holders <- holder
			errs <- err
		}()
	}
	seen := map[string]int{}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		seen[<-holders]++
	}
	if len(seen) != 1 {
		t.Errorf("claimers saw holders %v, want one", seen)
	}
}
