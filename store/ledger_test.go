package store

import (
	"context"
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
