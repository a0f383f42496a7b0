package dispatcher

import (
	"context"
	"fmt"
	"testing"
)

func TestPanickingSendIsRetriedAndTheRestSent(t *testing.T) {
	b := setup(t, Config{})
	poison := fmt.Sprintf("%064x", 3)
	b.ios.send = func(_ context.Context, to *Recipient) Result {
		if to.Token == poison {
			panic("provider bug")
		}
		return Result{Outcome: Sent}
	}
	batch := iosBatch("c", "", 8)
	del := b.handle(t, batch, Normal)
	b.settle(t)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("batch not acked")
	}
	if got := b.met.outcomes[Sent].Load(); got != 7 {
		t.Errorf("%d sends went through, want the 7 others", got)
	}
	holds, dead := b.out.snapshot()
	if len(holds) != 1 || len(dead) != 0 {
		t.Fatalf("holds %d, dead %d; want the panicking recipient held for a retry", len(holds), len(dead))
	}
	if rs := holds[0].batch.Recipients; len(rs) != 1 || rs[0].Token != poison {
		t.Errorf("held %+v", rs)
	}
}

func TestPanickingRendererDeadLettersTheBatch(t *testing.T) {
	b := setup(t, Config{})
	b.ios.prepare = func(*Notification) error { panic("renderer bug") }
	del := b.handle(t, iosBatch("c", "", 3), Normal)
	b.settle(t)
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("batch not acked")
	}
	_, dead := b.out.snapshot()
	if len(dead) != 1 || dead[0].why.Reason != "render_failed" {
		t.Fatalf("dead letters %+v, want one render_failed", dead)
	}
	if b.ios.total() != 0 {
		t.Error("sent a batch that could not be rendered")
	}
}
