package ratelimit

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

const (
	// minRate is the smallest positive rate a Bucket keeps; lower positive
	// rates are raised to it. At one token every 11.6 days, waits stay far
	// from overflowing a time.Duration.
	minRate = 1e-6
	// maxDefaultBurst caps DefaultBurst for absurdly high rates.
	maxDefaultBurst = math.MaxInt32
	// maxRefill bounds how far back newLimiter starts refilling a bucket.
	maxRefill = time.Duration(1 << 62)
)

// DefaultBurst returns the burst a Bucket gets when it is given none: a tenth
// of a second's worth of tokens, max(1, ceil(perSecond/10)), so that even
// short windows stay close to the rate. It is 1 for an unlimited rate
// (perSecond <= 0, NaN or +Inf), where the burst does not matter.
func DefaultBurst(perSecond float64) int {
	if !(perSecond > 0) || math.IsInf(perSecond, 1) {
		return 1
	}
	b := math.Ceil(perSecond / 10)
	if b > maxDefaultBurst {
		return maxDefaultBurst
	}
	return max(1, int(b))
}

// Bucket is a token bucket: it hands out perSecond tokens a second on
// average and up to burst at once, after an idle time. It is built on
// golang.org/x/time/rate and reads time only from its Clock.
//
// A Bucket starts full. Waiters are served in the order they arrived.
// Its limit can be changed at any time with Set, including to and from
// unlimited. A Bucket is safe for concurrent use; its zero value is not
// usable, call NewBucket.
type Bucket struct {
	unlimited atomic.Bool // perSecond == 0; read without the lock by Wait
	clock     Clock

	mu        sync.Mutex
	perSecond float64       // 0 means unlimited
	burst     int           // >= 1
	lim       *rate.Limiter // nil while unlimited
	// Goroutines blocked in Wait, in the order they reserved their tokens,
	// so their due times never decrease from head to tail.
	head, tail *waiter
	n          int // length of the list
}

// waiter is a goroutine blocked in Wait. Its fields are guarded by Bucket.mu.
type waiter struct {
	prev, next *waiter
	at         time.Time     // when its token is due
	free       bool          // owes nothing to the current limiter (made unlimited meanwhile)
	notified   bool          // at changed; cleared when the waiter looks again
	wake       chan struct{} // capacity 1; signalled when at changes
}

// NewBucket returns a full Bucket that allows perSecond tokens a second with
// bursts of burst, reading time from clock (SystemClock if nil).
//
// A perSecond <= 0, NaN or +Inf makes the bucket unlimited. A positive rate
// below one token every 11.6 days (1e-6/s) is raised to that. A burst below 1
// is replaced by DefaultBurst(perSecond), one above MaxBurst(perSecond) by
// that.
func NewBucket(perSecond float64, burst int, clock Clock) *Bucket {
	if clock == nil {
		clock = SystemClock()
	}
	b := &Bucket{clock: clock}
	b.perSecond, b.burst = normalize(perSecond, burst)
	if b.perSecond == 0 {
		b.unlimited.Store(true)
	} else {
		b.lim = rate.NewLimiter(rate.Limit(b.perSecond), b.burst)
	}
	return b
}

// normalize applies the rules of NewBucket to a rate and burst.
func normalize(perSecond float64, burst int) (float64, int) {
	switch {
	case !(perSecond > 0) || math.IsInf(perSecond, 1):
		perSecond = 0
	case perSecond < minRate:
		perSecond = minRate
	}
	if burst < 1 {
		burst = DefaultBurst(perSecond)
	}
	if m := MaxBurst(perSecond); burst > m {
		burst = m
	}
	return perSecond, burst
}

// MaxBurst is the largest burst a bucket of perSecond takes: a minute's
// worth of its rate, or 1000 for slower rates. A larger burst is lowered
// to it, so that a burst of 2^63-1 cannot turn a limit into none;
// configuration and the admin API refuse one instead (CheckBurst).
func MaxBurst(perSecond float64) int {
	const floor, window = 1000, 60
	if m := perSecond * window; m > floor && m < math.MaxInt32 {
		return int(m)
	} else if m >= math.MaxInt32 {
		return math.MaxInt32
	}
	return floor
}

// CheckBurst reports a burst that is negative or above MaxBurst(perSecond).
func CheckBurst(perSecond float64, burst int) error {
	if burst < 0 || burst > MaxBurst(perSecond) {
		return fmt.Errorf("burst %d: want 0 (a tenth of a second's worth) to %d (a minute's worth of the rate, at least 1000)", burst, MaxBurst(perSecond))
	}
	return nil
}

// Wait takes one token from the bucket, blocking until one is due, and
// reports how long the bucket held the caller back: from the call to the
// moment its token came due on the bucket's clock (zero if a token was there).
//
// An unlimited bucket returns at once without a lock or an allocation, and so
// does, without allocating, a bucket with a token to spare. If ctx is done
// before the token is due, Wait returns how long it waited and ctx.Err(),
// and gives the token back: the goroutines waiting behind move up. Wait does
// not give up early because of ctx's deadline, since a Set may still speed it
// up.
func (b *Bucket) Wait(ctx context.Context) (waited time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if b.unlimited.Load() {
		return 0, nil
	}
	return b.wait(ctx)
}

func (b *Bucket) wait(ctx context.Context) (time.Duration, error) {
	b.mu.Lock()
	if b.lim == nil { // became unlimited since Wait looked
		b.mu.Unlock()
		return 0, nil
	}
	start := b.clock.Now()
	if b.lim.AllowN(start, 1) {
		b.mu.Unlock()
		return 0, nil
	}
	at := b.reserveLocked(start)
	if !at.After(start) {
		b.mu.Unlock()
		return 0, nil
	}
	w := &waiter{at: at, wake: make(chan struct{}, 1)}
	b.pushLocked(w)
	b.mu.Unlock()

	d := at.Sub(start)
	for {
		timer := b.clock.NewTimer(d)
		select {
		case <-timer.C():
		case <-w.wake:
			timer.Stop()
		case <-ctx.Done():
			timer.Stop()
			b.mu.Lock()
			now := b.clock.Now()
			b.removeLocked(w)
			if b.lim != nil && !w.free {
				b.rescheduleLocked(now, b.lim.TokensAt(now)+1)
			}
			b.mu.Unlock()
			return now.Sub(start), ctx.Err()
		}
		b.mu.Lock()
		w.notified = false
		now := b.clock.Now()
		if !w.at.After(now) {
			b.removeLocked(w)
			b.mu.Unlock()
			return w.at.Sub(start), nil
		}
		d = w.at.Sub(now)
		b.mu.Unlock()
	}
}

// Set changes the bucket's rate and burst now, with the rules of NewBucket:
// perSecond <= 0 makes it unlimited, burst < 1 takes DefaultBurst.
//
// Goroutines already in Wait follow the new limit at once: their tokens are
// handed out again, in the order they arrived, on the new schedule. Raising
// the rate of a bucket whose waiter would have slept 10s at 0.1/s lets it go
// within 10ms at 100/s; making a bucket unlimited releases every waiter.
// Tokens saved up so far are kept, up to the new burst. A bucket that becomes
// limited starts full.
func (b *Bucket) Set(perSecond float64, burst int) {
	perSecond, burst = normalize(perSecond, burst)
	b.mu.Lock()
	defer b.mu.Unlock()
	if perSecond == b.perSecond && burst == b.burst {
		return
	}
	now := b.clock.Now()
	tokens := float64(burst)
	if b.lim != nil {
		tokens = b.lim.TokensAt(now)
	}
	b.perSecond, b.burst = perSecond, burst
	if perSecond == 0 {
		b.lim = nil
		b.unlimited.Store(true)
		for w := b.head; w != nil; w = w.next {
			w.free = true // its token, if any, was in the limiter just dropped
			if w.at.After(now) {
				w.at = now
				b.notifyLocked(w)
			}
		}
		return
	}
	b.unlimited.Store(false)
	b.rescheduleLocked(now, tokens)
}

// Limit returns the bucket's rate in tokens per second, 0 for unlimited, and
// its burst.
func (b *Bucket) Limit() (perSecond float64, burst int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.perSecond, b.burst
}

// Unlimited reports whether the bucket lets every Wait through at once.
func (b *Bucket) Unlimited() bool {
	return b.unlimited.Load()
}

// rescheduleLocked replaces the limiter with one, at the current rate and
// burst, that holds at now the given tokens plus those of every pending
// waiter (whose token is not due yet), then reserves the pending waiters'
// tokens again in queue order and wakes those whose due time changed.
//
// Giving tokens back with rate.Reservation.CancelAt would be simpler, but
// CancelAt only restores a token when no later reservation exists, and even
// cancelling from the last reservation back loses tokens to nanosecond
// rounding of the reservation times. Counting the pending waiters is exact.
func (b *Bucket) rescheduleLocked(now time.Time, tokens float64) {
	for w := b.head; w != nil; w = w.next {
		if w.at.After(now) {
			tokens++
		}
	}
	b.lim = newLimiter(now, b.perSecond, b.burst, tokens)
	for w := b.head; w != nil; w = w.next {
		if !w.at.After(now) {
			continue
		}
		if at := b.reserveLocked(now); !at.Equal(w.at) {
			w.at = at
			b.notifyLocked(w)
		}
	}
}

// newLimiter returns a limiter of perSecond and burst that holds the given
// tokens, clamped to [0, burst], at now.
func newLimiter(now time.Time, perSecond float64, burst int, tokens float64) *rate.Limiter {
	lim := rate.NewLimiter(rate.Limit(perSecond), burst)
	if tokens >= float64(burst) {
		return lim
	}
	tokens = max(tokens, 0)
	// Empty the bucket at the moment from which refilling it at perSecond
	// leaves it holding tokens at now, to the nearest nanosecond.
	refill := maxRefill
	if d := math.Round(tokens / perSecond * float64(time.Second)); d < float64(maxRefill) {
		refill = time.Duration(d)
	}
	lim.AllowN(now.Add(-refill), burst)
	return lim
}

// reserveLocked takes one token from the limiter, going into debt if need
// be, and returns when it is due.
func (b *Bucket) reserveLocked(now time.Time) time.Time {
	return now.Add(b.lim.ReserveN(now, 1).DelayFrom(now))
}

func (b *Bucket) notifyLocked(w *waiter) {
	w.notified = true
	select {
	case w.wake <- struct{}{}:
	default: // already signalled
	}
}

func (b *Bucket) pushLocked(w *waiter) {
	w.prev = b.tail
	if b.tail != nil {
		b.tail.next = w
	} else {
		b.head = w
	}
	b.tail = w
	b.n++
}

func (b *Bucket) removeLocked(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		b.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		b.tail = w.prev
	}
	w.prev, w.next = nil, nil
	b.n--
}
