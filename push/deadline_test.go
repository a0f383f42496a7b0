package push

import (
	"context"
	"testing"
	"time"
)

func TestDeadlinesShareAContextWithinTheirShare(t *testing.T) {
	now := time.Now() // the contexts' timers run on the real clock
	d := &Deadlines{Timeout: 10 * time.Second, Now: func() time.Time { return now }}
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()

	first := d.Context(parent)
	dl, ok := first.Deadline()
	if !ok {
		t.Fatal("no deadline")
	}
	if got, want := dl.Sub(now), 10*time.Second+deadlineShare; got != want {
		t.Errorf("deadline %v after the first push, want %v", got, want)
	}
	now = now.Add(deadlineShare - time.Nanosecond)
	if d.Context(parent) != first {
		t.Error("a push starting within the share got a context of its own")
	}
	if dl, _ := first.Deadline(); dl.Sub(now) < d.Timeout {
		t.Errorf("the last push of the share waits %v at most, less than the timeout", dl.Sub(now))
	}
	now = now.Add(time.Nanosecond)
	second := d.Context(parent)
	if second == first {
		t.Fatal("a push starting after the share got the shared context")
	}
	if dl, _ := second.Deadline(); dl.Sub(now) != 10*time.Second+deadlineShare {
		t.Errorf("deadline %v after the push, want %v", dl.Sub(now), 10*time.Second+deadlineShare)
	}

	other, cancelOther := context.WithCancel(context.Background())
	defer cancelOther()
	if d.Context(other) == second {
		t.Error("a push with another parent got the shared context")
	}
	ctx := d.Context(parent)
	cancel()
	<-ctx.Done() // the parent's cancellation reaches it
	if ctx.Err() != context.Canceled {
		t.Errorf("err %v after the parent was cancelled", ctx.Err())
	}
}

func TestDeadlinesEndAtTheirDeadline(t *testing.T) {
	d := &Deadlines{Timeout: time.Millisecond}
	ctx := d.Context(context.Background())
	<-ctx.Done()
	if ctx.Err() != context.DeadlineExceeded {
		t.Errorf("err %v", ctx.Err())
	}
}

func BenchmarkDeadlines(b *testing.B) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Run("shared", func(b *testing.B) {
		d := &Deadlines{Timeout: 10 * time.Second}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = d.Context(parent).Done()
			}
		})
	})
	b.Run("per-push", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ctx, cancel := context.WithTimeout(parent, 10*time.Second)
				_ = ctx.Done()
				cancel()
			}
		})
	})
}
