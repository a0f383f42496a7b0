package synth

import (
	"testing"

	"github.com/pushd/pushd/dispatcher"
)

func TestBatches(t *testing.T) {
	o := Options{Campaign: "c", Recipients: 2500, BatchSize: 1000, IOSPercent: 50}
	var sizes []int
	seen := map[string]bool{}
	ios := 0
	for b := range o.Batches() {
		sizes = append(sizes, len(b.Recipients))
		for _, r := range b.Recipients {
			if err := r.Check(); err != nil {
				t.Fatalf("synthetic recipient invalid: %v", err)
			}
			if seen[r.Token] {
				t.Fatalf("duplicate token")
			}
			seen[r.Token] = true
			if r.Platform == dispatcher.IOS {
				ios++
			}
		}
	}
	if len(sizes) != 3 || sizes[0] != 1000 || sizes[2] != 500 {
		t.Errorf("batch sizes %v", sizes)
	}
	if ios != 1250 {
		t.Errorf("iOS recipients %d, want 1250", ios)
	}
	a, b := IOSToken("c", 1), IOSToken("c", 1)
	if a != b || a == IOSToken("d", 1) || a == IOSToken("c", 2) {
		t.Error("tokens not deterministic per campaign")
	}
}
