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
	})
	if err != nil {
		t.Fatal(err)
	}
	// The last write of a run: everything resolved, with its hand-offs.
	final := dispatcher.LedgerEntry{Resolved: []byte{0x07}, Rest: []byte{0x02}, Retry: []byte{0x04}}
	if err := s.RecordLedger(ctx, map[string]dispatcher.LedgerEntry{"k1": final}); err != nil {
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
		if err := s.RecordLedger(ctx, entries); err != nil {
			b.Fatal(err)
		}
		clear(entries)
	}
}
