package store

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestLedger(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	if b, err := s.Resolved(ctx, "k1"); err != nil || b != nil {
		t.Fatalf("unknown key: %x, %v", b, err)
	}
	if err := s.RecordResolved(ctx, map[string][]byte{"k1": {0x05}, "k2": {0xff, 0x01}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordResolved(ctx, map[string][]byte{"k1": {0x07}}); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string][]byte{"k1": {0x07}, "k2": {0xff, 0x01}} {
		if b, err := s.Resolved(ctx, k); err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s: %x, %v; want %x", k, b, err, want)
		}
	}
	if n, err := s.PruneLedger(ctx, b.clock.Now().Add(-time.Minute)); err != nil || n != 0 {
		t.Errorf("prune of older rows: %d, %v", n, err)
	}
	n, err := s.PruneLedger(ctx, b.clock.Now().Add(time.Hour))
	if err != nil || n != 2 {
		t.Errorf("prune: %d, %v", n, err)
	}
	if b, _ := s.Resolved(ctx, "k1"); b != nil {
		t.Error("pruned row still there")
	}
}
