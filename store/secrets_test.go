package store

import (
	"bytes"
	"context"
	"sync"
	"testing"
)

func TestSecretIsMadeOnceAndShared(t *testing.T) {
	s, b := setup(t)
	ctx := context.Background()
	if _, err := s.Secret(ctx, "k", 8); err == nil {
		t.Error("an 8-byte secret was made")
	}
	// Made once, whoever asks first.
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() {
			v, err := s.Secret(ctx, "header_seal", 32)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		})
	}
	wg.Wait()
	for _, v := range got[1:] {
		if len(v) != 32 || !bytes.Equal(v, got[0]) {
			t.Fatalf("secrets differ: %x, %x", got[0], v)
		}
	}
	// Kept across a restart, and another name gets another secret.
	s = reopen(t, b)
	if v, err := s.Secret(ctx, "header_seal", 32); err != nil || !bytes.Equal(v, got[0]) {
		t.Errorf("after reopen: %x, %v; want %x", v, err, got[0])
	}
	if v, err := s.Secret(ctx, "other", 32); err != nil || bytes.Equal(v, got[0]) {
		t.Errorf("another name: %x, %v", v, err)
	}
}
