package testwait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	For(t, 10*time.Second, "three calls", func() bool { return n.Add(1) >= 3 })
	if got := n.Load(); got != 3 {
		t.Errorf("cond called %d times, want 3", got)
	}
}

// fatalT records Fatalf instead of stopping the test.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Helper() {}
func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = format
}

func TestForFailsNamingWhatItWaitedFor(t *testing.T) {
	ft := &fatalT{TB: t}
	For(ft, 20*time.Millisecond, "never", func() bool { return false })
	if ft.msg == "" {
		t.Fatal("For returned without failing on a condition that never holds")
	}
}
