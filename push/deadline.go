package push

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlineShare is how long the pushes starting one after another share one
// deadline context.
const deadlineShare = 10 * time.Millisecond

// Deadlines gives each push a context that ends Timeout after it starts, at
// the cost of one context every deadlineShare rather than one per push: the
// pushes that start within the same deadlineShare share a context whose
// deadline is Timeout after the last of them may start. Each push therefore
// waits at least Timeout and at most Timeout+deadlineShare.
//
// A context and a timer per push cost an allocation of about 350 bytes, a
// timer in the runtime's heap and a child in the parent's cancel list under
// its lock (every sender takes it) for each push, at tens of thousands of
// pushes a second. The shared context is never cancelled early: its timer
// releases it at its deadline, so at most Timeout/deadlineShare of them are
// alive at once.
type Deadlines struct {
	// Timeout is the least time a push may wait for its answer.
	Timeout time.Duration
	// Now is the clock; time.Now if nil.
	Now func() time.Time

	cur atomic.Pointer[sharedDeadline]
}

// sharedDeadline is the context the pushes starting before until, with
// parent as their context, share.
type sharedDeadline struct {
	parent context.Context
	until  time.Time
	ctx    context.Context
	// cancel is kept, never called before the deadline: pushes may
	// still hold ctx.
	cancel context.CancelFunc
}

// Context returns the context of a push starting now whose context was
// parent: parent's values and cancellation, and a deadline at least Timeout
// away.
func (d *Deadlines) Context(parent context.Context) context.Context {
	now := time.Now()
	if d.Now != nil {
		now = d.Now()
	}
	if cur := d.cur.Load(); cur != nil && cur.parent == parent && now.Before(cur.until) {
		return cur.ctx
	}
	until := now.Add(deadlineShare)
	ctx, cancel := context.WithDeadline(parent, until.Add(d.Timeout))
	// Several pushes may make a context here at once; the last one stored
	// is shared, and the others serve their own push only.
	d.cur.Store(&sharedDeadline{parent: parent, until: until, ctx: ctx, cancel: cancel})
	return ctx
}
