package ratelimit

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestDefaultBurst(t *testing.T) {
	tests := []struct {
		perSecond float64
		want      int
	}{
		{0, 1},
		{-5, 1},
		{math.NaN(), 1},
		{math.Inf(1), 1},
		{0.1, 1},
		{5, 1},
		{10, 1},
		{10.5, 2},
		{100, 10},
		{600_000.0 / 60, 1000},
		{1e300, math.MaxInt32},
	}
	for _, tt := range tests {
		if got := DefaultBurst(tt.perSecond); got != tt.want {
			t.Errorf("DefaultBurst(%v) = %d, want %d", tt.perSecond, got, tt.want)
		}
	}
}

func TestNewBucketLimit(t *testing.T) {
	tests := []struct {
		name          string
		perSecond     float64
		burst         int
		wantPerSecond float64
		wantBurst     int
		wantUnlimited bool
	}{
		{"rate and burst", 5, 3, 5, 3, false},
		{"default burst", 100, 0, 100, 10, false},
		{"negative burst", 5, -1, 5, 1, false},
		{"zero rate is unlimited", 0, 0, 0, 1, true},
		{"negative rate is unlimited", -1, 7, 0, 7, true},
		{"infinite rate is unlimited", math.Inf(1), 0, 0, 1, true},
		{"NaN rate is unlimited", math.NaN(), 0, 0, 1, true},
		{"tiny rate is raised", 1e-9, 1, minRate, 1, false},
		{"huge burst is bounded", 5, math.MaxInt, 5, 1000, false},
		{"huge burst at 100/s: a minute's worth", 100, math.MaxInt, 100, 6000, false},
		{"huge rate and burst", 1e12, math.MaxInt, 1e12, math.MaxInt32, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBucket(tt.perSecond, tt.burst, NewManualClock(epoch()))
			r, burst := b.Limit()
			if r != tt.wantPerSecond || burst != tt.wantBurst || b.Unlimited() != tt.wantUnlimited {
				t.Errorf("Limit() = %v, %d, Unlimited() = %v; want %v, %d, %v",
					r, burst, b.Unlimited(), tt.wantPerSecond, tt.wantBurst, tt.wantUnlimited)
			}
			// Set applies the same rules.
			b = NewBucket(1, 1, NewManualClock(epoch()))
			b.Set(tt.perSecond, tt.burst)
			r, burst = b.Limit()
			if r != tt.wantPerSecond || burst != tt.wantBurst || b.Unlimited() != tt.wantUnlimited {
				t.Errorf("after Set: Limit() = %v, %d, Unlimited() = %v; want %v, %d, %v",
					r, burst, b.Unlimited(), tt.wantPerSecond, tt.wantBurst, tt.wantUnlimited)
			}
		})
	}
}

// step is one move of a scripted test: start waiters, change the limit,
// cancel waiters, move the clock, in that order, then check the totals once
// every goroutine is blocked again.
type step struct {
	start   int // goroutines to start, one after the other, each waiting once; ids count from 0
	set     bool
	rate    float64
	burst   int
	cancel  []int // waiter ids whose context to cancel
	advance time.Duration

	granted int                   // Waits that returned a token so far
	failed  int                   // Waits that returned an error so far
	at      map[int]time.Duration // waiter id -> when its token came due, after epoch
}

func (h *harness) run(steps []step) {
	h.t.Helper()
	for i, s := range steps {
		h.startEach(s.start)
		if s.set {
			h.b.Set(s.rate, s.burst)
		}
		for _, id := range s.cancel {
			h.cancel(id)
		}
		h.clock.Advance(s.advance)
		h.settle()
		if granted, failed := h.count(); granted != s.granted || failed != s.failed {
			h.t.Fatalf("step %d at +%v: %d granted, %d failed; want %d, %d",
				i, h.clock.Now().Sub(epoch()), granted, failed, s.granted, s.failed)
		}
		for _, r := range h.snapshot() {
			want, ok := s.at[r.id]
			if !ok {
				continue
			}
			if r.err != nil {
				h.t.Fatalf("step %d: waiter %d failed: %v", i, r.id, r.err)
			}
			if got := r.at.Sub(epoch()); got != want {
				h.t.Errorf("step %d: waiter %d's token came due at +%v, want +%v", i, r.id, got, want)
			}
		}
	}
}

const ms = time.Millisecond

func TestWait(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"burst then rate", 5, 2, []step{
			{start: 3, granted: 2, at: map[int]time.Duration{0: 0, 1: 0}},
			{advance: 199 * ms, granted: 2},
			{advance: 1 * ms, granted: 3, at: map[int]time.Duration{2: 200 * ms}},
		}},
		{"first come first served", 1, 1, []step{
			{start: 5, granted: 1},
			{advance: 4 * time.Second, granted: 5, at: map[int]time.Duration{
				1: time.Second, 2: 2 * time.Second, 3: 3 * time.Second, 4: 4 * time.Second}},
		}},
		{"idle time refills up to the burst", 10, 3, []step{
			{start: 3, granted: 3},
			{advance: 10 * time.Second, granted: 3},
			{start: 4, granted: 6},
			{advance: 100 * ms, granted: 7},
		}},
		{"unlimited never waits", 0, 0, []step{
			{start: 50, granted: 50},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setup(t, tt.rate, tt.burst).run(tt.steps)
		})
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"raising 0.1/s to 100/s wakes a 10s sleeper", 0.1, 1, []step{
			{start: 2, granted: 1}, // waiter 1 is due at +10s
			{advance: time.Second, granted: 1},
			// 0.1 token saved at 0.1/s; the other 0.9 takes 9ms at 100/s.
			{set: true, rate: 100, burst: 1, granted: 1},
			{advance: 8 * ms, granted: 1},
			{advance: 1 * ms, granted: 2, at: map[int]time.Duration{1: 1009 * ms}},
		}},
		{"lowering 10/s to 1/s holds waiters back", 10, 1, []step{
			{start: 3, granted: 1}, // due at +100ms and +200ms
			{advance: 50 * ms, granted: 1},
			// Half a token saved; the next takes 500ms at 1/s, then 1s each.
			{set: true, rate: 1, burst: 1, granted: 1},
			{advance: 100 * ms, granted: 1},
			{advance: 399 * ms, granted: 1},
			{advance: 1 * ms, granted: 2, at: map[int]time.Duration{1: 550 * ms}},
			{advance: time.Second, granted: 3, at: map[int]time.Duration{2: 1550 * ms}},
		}},
		{"raising the rate keeps the queue order", 2, 1, []step{
			{start: 4, granted: 1}, // due at +500ms, +1s, +1.5s
			{set: true, rate: 4, burst: 1, granted: 1},
			{advance: 250 * ms, granted: 2},
			{advance: 500 * ms, granted: 4, at: map[int]time.Duration{
				1: 250 * ms, 2: 500 * ms, 3: 750 * ms}},
		}},
		{"limited to unlimited releases every waiter", 1, 1, []step{
			{start: 4, granted: 1},
			{set: true, rate: 0, granted: 4, at: map[int]time.Duration{1: 0, 2: 0, 3: 0}},
			{start: 3, granted: 7},
		}},
		{"unlimited to limited starts full", 0, 0, []step{
			{start: 3, granted: 3},
			{set: true, rate: 2, burst: 1, granted: 3},
			{start: 3, granted: 4},
			{advance: 500 * ms, granted: 5},
			{advance: 500 * ms, granted: 6, at: map[int]time.Duration{5: time.Second}},
		}},
		{"limited, unlimited, limited again", 1, 1, []step{
			{start: 3, granted: 1},
			{set: true, rate: 0, granted: 3},
			{set: true, rate: 1, burst: 2, granted: 3},
			{start: 3, granted: 5},
			{advance: time.Second, granted: 6},
		}},
		{"raising the burst lets more tokens pile up", 1, 1, []step{
			{start: 1, granted: 1},
			{set: true, rate: 1, burst: 3, granted: 1},
			{advance: 5 * time.Second, granted: 1},
			{start: 4, granted: 4},
			{advance: time.Second, granted: 5},
		}},
		{"lowering the burst drops saved tokens", 1, 5, []step{
			{set: true, rate: 1, burst: 2, granted: 0},
			{start: 3, granted: 2},
			{advance: time.Second, granted: 3},
		}},
		{"lowering the burst under waiters loses none of theirs", 10, 5, []step{
			{start: 8, granted: 5}, // due at +100ms, +200ms, +300ms
			{advance: 150 * ms, granted: 6},
			{set: true, rate: 10, burst: 1, granted: 6},
			{advance: 50 * ms, granted: 7, at: map[int]time.Duration{6: 200 * ms}},
			{advance: 100 * ms, granted: 8, at: map[int]time.Duration{7: 300 * ms}},
		}},
		{"setting the same limit changes nothing", 1, 1, []step{
			{start: 2, granted: 1},
			{set: true, rate: 1, burst: 1, granted: 1},
			{advance: time.Second, granted: 2, at: map[int]time.Duration{1: time.Second}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setup(t, tt.rate, tt.burst).run(tt.steps)
		})
	}
}

func TestWaitCancel(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"cancelled waiter takes no token", 1, 1, []step{
			{start: 2, granted: 1},
			{advance: 500 * ms, granted: 1},
			{cancel: []int{1}, granted: 1, failed: 1},
			// Waiter 2 gets the token waiter 1 would have had.
			{start: 1, granted: 1, failed: 1},
			{advance: 500 * ms, granted: 2, failed: 1, at: map[int]time.Duration{2: time.Second}},
		}},
		{"cancelling a waiter in the middle moves the rest up", 1, 1, []step{
			{start: 4, granted: 1}, // due at +1s, +2s, +3s
			{cancel: []int{2}, granted: 1, failed: 1},
			{advance: 2 * time.Second, granted: 3, failed: 1, at: map[int]time.Duration{
				1: time.Second, 3: 2 * time.Second}},
		}},
		{"cancelling the first waiter", 4, 1, []step{
			{start: 3, granted: 1}, // due at +250ms, +500ms
			{advance: 100 * ms, granted: 1},
			{cancel: []int{1}, granted: 1, failed: 1},
			{advance: 150 * ms, granted: 2, failed: 1, at: map[int]time.Duration{2: 250 * ms}},
		}},
		{"cancelling every waiter refills the bucket", 1, 2, []step{
			{start: 5, granted: 2},
			{cancel: []int{4, 2, 3}, granted: 2, failed: 3},
			{advance: 2 * time.Second, granted: 2, failed: 3},
			{start: 3, granted: 4, failed: 3},
		}},
		{"cancelling after a switch to unlimited", 1, 1, []step{
			{start: 2, granted: 1},
			{set: true, rate: 0, granted: 2},
			{set: true, rate: 1, burst: 1, granted: 2},
			{start: 2, granted: 3},
			{cancel: []int{3}, granted: 3, failed: 1},
			{start: 1, granted: 3, failed: 1},
			{advance: time.Second, granted: 4, failed: 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setup(t, tt.rate, tt.burst).run(tt.steps)
		})
	}
}

func TestWaitCancelledContext(t *testing.T) {
	tests := []struct {
		name string
		rate float64
	}{
		{"limited", 1},
		{"unlimited", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBucket(tt.rate, 1, NewManualClock(epoch()))
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := b.Wait(ctx); err != context.Canceled {
				t.Fatalf("Wait(cancelled) = %v, want context.Canceled", err)
			}
			// The token is still there.
			if waited, err := b.Wait(context.Background()); waited != 0 || err != nil {
				t.Fatalf("Wait after a cancelled Wait = %v, %v; want 0, nil", waited, err)
			}
		})
	}
}

func TestWaitDeadline(t *testing.T) {
	clock := NewManualClock(epoch())
	b := NewBucket(1, 1, clock)
	if _, err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*ms)
	defer cancel()
	if _, err := b.Wait(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Wait past its deadline = %v, want context.DeadlineExceeded", err)
	}
	if n := clock.Waiters(); n != 0 {
		t.Fatalf("%d timers left pending", n)
	}
}

func TestWaitDoesNotAllocate(t *testing.T) {
	tests := []struct {
		name string
		b    *Bucket
	}{
		{"unlimited", NewBucket(0, 0, NewManualClock(epoch()))},
		{"token available, manual clock", NewBucket(1000, 1<<20, NewManualClock(epoch()))}, // burst bounded to 60,000
		{"token available, system clock", NewBucket(1e9, 0, SystemClock())},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(1000, func() {
				if waited, err := tt.b.Wait(ctx); waited != 0 || err != nil {
					t.Fatalf("Wait = %v, %v; want no wait", waited, err)
				}
			})
			if allocs != 0 {
				t.Errorf("Wait allocates %v times per call, want 0", allocs)
			}
		})
	}
}

func TestWaitUnlimitedTakesNoLock(t *testing.T) {
	b := NewBucket(0, 0, NewManualClock(epoch()))
	b.mu.Lock()
	defer b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			if _, err := b.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait on an unlimited bucket blocked on the bucket's lock")
	}
}

// TestWaitProperty runs many goroutines against one bucket while the clock
// moves in random steps, and checks that over every window between two
// grants, no more tokens were handed out than the rate and burst allow, and
// that none were lost: the long-run rate is the configured one.
func TestWaitProperty(t *testing.T) {
	tests := []struct {
		name       string
		rate       float64
		burst      int
		goroutines int
		waits      int
		maxStep    time.Duration
	}{
		{"campaign 5/s", 5, 1, 20, 25, 700 * ms},
		{"7/s burst 3", 7, 3, 16, 40, 500 * ms},
		{"1000/s default burst", 1000, 0, 32, 40, 3 * ms},
		{"0.5/s burst 4", 0.5, 4, 8, 10, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, seed))

			h := setup(t, tt.rate, tt.burst)
			_, burst := h.b.Limit()
			for range tt.goroutines {
				h.start(tt.waits)
			}
			h.settle()
			for h.live.Load() > 0 {
				h.clock.Advance(time.Duration(rng.Int64N(int64(tt.maxStep))) + 1)
				h.settle()
			}

			tokens := func(t time.Time) float64 { return tt.rate * t.Sub(epoch()).Seconds() }
			at := grantTimes(t, h.snapshot(), tt.goroutines*tt.waits)
			checkWindows(t, at, tokens, float64(burst))
			checkNoneLost(t, at, tokens, float64(burst))
		})
	}
}

// TestWaitPropertySet is TestWaitProperty with the rate and burst changed at
// random times: over every window, the tokens handed out stay within the
// integral of the rate plus the largest burst, and none are lost.
func TestWaitPropertySet(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	rates := []float64{0.5, 2, 5, 20, 100}
	const goroutines, waits = 16, 50

	// The rate as it changed: from each segment's start on.
	type segment struct {
		from time.Time
		rate float64
	}
	rate, burst := 5.0, 2
	segments := []segment{{epoch(), rate}}
	maxBurst := burst

	h := setup(t, rate, burst)
	for range goroutines {
		h.start(waits)
	}
	h.settle()
	for h.live.Load() > 0 {
		if rng.IntN(4) == 0 {
			rate, burst = rates[rng.IntN(len(rates))], 1+rng.IntN(4)
			h.b.Set(rate, burst)
			segments = append(segments, segment{h.clock.Now(), rate})
			maxBurst = max(maxBurst, burst)
		} else {
			h.clock.Advance(time.Duration(rng.Int64N(int64(3/rate*float64(time.Second)))) + 1)
		}
		h.settle()
	}

	// tokens returns the integral of the rate from epoch to t.
	tokens := func(t time.Time) float64 {
		sum := 0.0
		for i, s := range segments {
			if !t.After(s.from) {
				break
			}
			end := t
			if i+1 < len(segments) && segments[i+1].from.Before(t) {
				end = segments[i+1].from
			}
			sum += s.rate * end.Sub(s.from).Seconds()
		}
		return sum
	}
	at := grantTimes(t, h.snapshot(), goroutines*waits)
	checkWindows(t, at, tokens, float64(maxBurst))
	checkNoneLost(t, at, tokens, 2) // the initial burst
	t.Logf("%d changes of the limit", len(segments)-1)
}

// grantTimes checks that every Wait succeeded and returns when each token
// came due, sorted.
func grantTimes(t *testing.T, results []result, want int) []time.Time {
	t.Helper()
	if len(results) != want {
		t.Fatalf("%d Waits returned, want %d", len(results), want)
	}
	at := make([]time.Time, 0, len(results))
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("Wait failed: %v", r.err)
		}
		at = append(at, r.at)
	}
	slices.SortFunc(at, time.Time.Compare)
	return at
}

// checkWindows checks that in every window [at[i], at[j]], the number of
// grants is at most the tokens the rate gives over the window plus burst,
// give or take a thousandth of a token for nanosecond rounding. tokens(t) is
// the integral of the rate up to t.
func checkWindows(t *testing.T, at []time.Time, tokens func(time.Time) float64, burst float64) {
	t.Helper()
	cum := make([]float64, len(at))
	for i, a := range at {
		cum[i] = tokens(a)
	}
	for j := range at {
		for i := 0; i <= j; i++ {
			if n, allowed := float64(j-i+1), cum[j]-cum[i]+burst; n > allowed+1e-3 {
				t.Fatalf("%v grants in [+%v, +%v], at most %.3f allowed",
					n, at[i].Sub(epoch()), at[j].Sub(epoch()), allowed)
			}
		}
	}
}

// checkNoneLost checks that, as goroutines were waiting all along, the
// bucket handed out every token it had: the initial burst plus what the rate
// gave until the last grant, give or take one for rounding.
func checkNoneLost(t *testing.T, at []time.Time, tokens func(time.Time) float64, burst float64) {
	t.Helper()
	last := at[len(at)-1]
	if n, want := float64(len(at)), burst+tokens(last); n < want-1 {
		t.Fatalf("%v grants by +%v, want %.3f: tokens were lost", n, last.Sub(epoch()), want)
	}
}

// The tests below pin the bucket's arithmetic exactly, on the ManualClock:
// the rates the end-to-end tests used to measure against the wall clock
// within 5% (a campaign at 100/s, a provider at 200/s burst 20, a reload from
// 1000/s to 100/s), and the edges (0.5/s, 30000/s).
//
// Token k after the burst comes due k/rate after the bucket started
// draining, truncated to the nanosecond (time.Duration's resolution; the
// truncation never accumulates). So over T a bucket grants burst +
// floor(rate·T), except that a token whose exact due time falls within the
// nanosecond after T is counted in; the Ts below are whole milliseconds,
// where that cannot happen for these rates.

// TestWaitGrantsBurstPlusRateExactly keeps one goroutine waiting on a full
// bucket back to back and counts the tokens granted over T: exactly burst +
// floor(rate·T), the last one no later than T.
// A burst of 2^63-1 no longer turns a limit into none (issue 13, item
// 10): the bucket takes at most a minute's worth of its rate (at least
// 1000) at once, then the rate.
func TestHugeBurstStillLimits(t *testing.T) {
	h := setup(t, 10, math.MaxInt)
	h.start(2000)
	h.runUntil(epoch().Add(10 * time.Second))
	if got, want := len(h.granted()), 1000+100; got != want {
		t.Errorf("%d tokens in 10s at 10/s with a huge burst, want %d", got, want)
	}
	for _, tc := range []struct {
		rate  float64
		burst int
		ok    bool
	}{{10, 0, true}, {10, 1000, true}, {10, 1001, false}, {100, 6000, true}, {100, 6001, false}, {0, -1, false}, {5, math.MaxInt, false}} {
		if err := CheckBurst(tc.rate, tc.burst); (err == nil) != tc.ok {
			t.Errorf("CheckBurst(%v, %d) = %v, want ok %v", tc.rate, tc.burst, err, tc.ok)
		}
	}
}

func TestWaitGrantsBurstPlusRateExactly(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int // 0: DefaultBurst
		over  time.Duration
		want  int
	}{
		{"0.5/s over 10s", 0.5, 1, 10 * time.Second, 1 + 5},
		{"0.5/s burst 4 over 3s", 0.5, 4, 3 * time.Second, 4 + 1},
		{"1/s just before the second token", 1, 1, 999 * ms, 1 + 0},
		{"1/s at the second token", 1, 1, time.Second, 1 + 1},
		{"5/s burst 2 over 1.1s", 5, 2, 1100 * ms, 2 + 5},
		{"7/s burst 3 over 2.5s", 7, 3, 2500 * ms, 3 + 17},
		{"campaign 100/s, default burst, over 10s", 100, 0, 10 * time.Second, 10 + 1000},
		{"provider 200/s burst 20 over 3s", 200, 20, 3 * time.Second, 20 + 600},
		{"30000/s burst 1 over 100ms", 30000, 1, 100 * ms, 1 + 3000},
		{"30000/s, default burst, over 1s", 30000, 0, time.Second, 3000 + 30000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := setup(t, tt.rate, tt.burst)
			h.start(tt.want + 1) // never runs out before T
			end := epoch().Add(tt.over)
			h.runUntil(end)
			at := h.granted()
			if len(at) != tt.want {
				t.Fatalf("%d tokens granted over %v, want %d", len(at), tt.over, tt.want)
			}
			if last := at[len(at)-1]; last.After(end) {
				t.Errorf("last token due at +%v, after +%v", last.Sub(epoch()), tt.over)
			}
		})
	}
}

// TestSetTakesEffectExactlyWhenCalled keeps one goroutine waiting back to
// back, changes the limit at a given instant, and checks the grants: before
// the change on the old schedule; the first after it due once the token
// saved up so far (a fraction, the bucket being drained) is completed at the
// new rate; then one every 1/rate.
func TestSetTakesEffectExactlyWhenCalled(t *testing.T) {
	tests := []struct {
		name        string
		rate, burst float64
		at          time.Duration // when Set is called
		newRate     float64
		newBurst    int
		before      int           // tokens granted by at
		first       time.Duration // when the first token after at is due
		over        time.Duration // after at
		after       int           // tokens granted in (at, at+over]
	}{
		// The reload from 1000/s to 100/s, at a token's due time: nothing
		// saved, the next is due 1/100 s later.
		{"1000/s to 100/s", 1000, 1, time.Second, 100, 1, 1 + 1000, 1010 * ms, 2 * time.Second, 200},
		{"100/s to 1000/s", 100, 1, time.Second, 1000, 1, 1 + 100, 1001 * ms, 2 * time.Second, 2000},
		// 0.4 of a token saved at 1/s; the other 0.6 takes 60ms at 10/s.
		{"1/s to 10/s mid-token", 1, 1, 400 * ms, 10, 1, 1, 460 * ms, time.Second, 10},
		// Half a token saved at 10/s; the other half takes 500ms at 1/s.
		{"10/s to 1/s mid-token", 10, 1, 150 * ms, 1, 1, 1 + 1, 650 * ms, 3 * time.Second, 3},
		// Half a token saved at 0.5/s; the other half takes 1/60000 s.
		{"0.5/s to 30000/s", 0.5, 1, 3 * time.Second, 30000, 0, 1 + 1, 3*time.Second + 16666, 100 * ms, 3000},
		// A new burst does not matter to a drained bucket.
		{"5/s burst 5 to 5/s burst 1", 5, 5, time.Second, 5, 1, 5 + 5, 1200 * ms, time.Second, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := setup(t, tt.rate, int(tt.burst))
			h.start(tt.before + tt.after + 1)
			set := epoch().Add(tt.at)
			h.runUntil(set)
			if got := len(h.granted()); got != tt.before {
				t.Fatalf("%d tokens granted by +%v, want %d", got, tt.at, tt.before)
			}
			h.b.Set(tt.newRate, tt.newBurst)
			h.runUntil(set.Add(tt.over))
			at := h.granted()
			if got := len(at) - tt.before; got != tt.after {
				t.Fatalf("%d tokens granted in the %v after the Set, want %d", got, tt.over, tt.after)
			}
			if got := at[tt.before].Sub(epoch()); got != tt.first {
				t.Errorf("first token after the Set due at +%v, want +%v", got, tt.first)
			}
		})
	}
}

// TestWaitReturnsExactDurations queues goroutines on a full bucket at once:
// each Wait returns how long it was held back, 0 for the burst and then k/rate
// for the k-th after it, truncated to the nanosecond.
func TestWaitReturnsExactDurations(t *testing.T) {
	tests := []struct {
		name   string
		rate   float64
		burst  int
		waited []time.Duration // by waiter, in arrival order
	}{
		{"4/s burst 2", 4, 2, []time.Duration{0, 0, 250 * ms, 500 * ms, 750 * ms, time.Second}},
		{"0.5/s", 0.5, 1, []time.Duration{0, 2 * time.Second, 4 * time.Second, 6 * time.Second}},
		{"3/s, truncated", 3, 1, []time.Duration{0, 333333333, 666666666, time.Second, 1333333333}},
		{"7/s, truncated", 7, 1, []time.Duration{0, 142857142, 285714285, 428571428, 571428571}},
		{"30000/s, truncated", 30000, 1, []time.Duration{0, 33333, 66666, 100000, 133333}},
		{"unlimited", 0, 0, []time.Duration{0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := setup(t, tt.rate, tt.burst)
			h.startEach(len(tt.waited)) // in id order, all at epoch
			h.runUntil(epoch().Add(tt.waited[len(tt.waited)-1]))
			got := make([]time.Duration, len(tt.waited))
			for _, r := range h.snapshot() {
				if r.err != nil {
					t.Fatalf("waiter %d: %v", r.id, r.err)
				}
				got[r.id] = r.waited
			}
			if !slices.Equal(got, tt.waited) {
				t.Errorf("waited %v, want %v", got, tt.waited)
			}
		})
	}
}

// TestUnlimitedNeverWaits runs goroutines that Wait many times on an
// unlimited bucket, and on one made unlimited while they are blocked, and
// never moves the clock: every Wait returns 0 and no timer is left.
func TestUnlimitedNeverWaits(t *testing.T) {
	const goroutines, waits = 8, 1000
	tests := []struct {
		name   string
		rate   float64
		before int // Waits that return before the bucket is made unlimited
	}{
		{"unlimited from the start", 0, 0},
		{"made unlimited while goroutines wait", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := setup(t, tt.rate, 1)
			for range goroutines {
				h.start(waits)
			}
			h.settle()
			if tt.rate > 0 {
				if granted, _ := h.count(); granted != tt.before {
					t.Fatalf("%d granted before the Set, want %d", granted, tt.before)
				}
				h.b.Set(0, 0)
			}
			h.wg.Wait() // every goroutine returns without the clock moving
			if h.clock.Now() != epoch() {
				t.Fatal("the clock moved")
			}
			for _, r := range h.snapshot() {
				if r.err != nil || r.waited != 0 {
					t.Fatalf("waiter %d: Wait = %v, %v; want 0, nil", r.id, r.waited, r.err)
				}
			}
			if granted, _ := h.count(); granted != goroutines*waits {
				t.Errorf("%d Waits returned, want %d", granted, goroutines*waits)
			}
			if n := h.clock.Waiters(); n != 0 {
				t.Errorf("%d timers pending", n)
			}
		})
	}
}

// TestWaitSharedBucketExactTotal has several goroutines wait back to back on
// one bucket. Together they get exactly burst + floor(rate·T) tokens over T,
// the bound of a single waiter, and no window holds more than its rate plus
// the burst. Run it with -race.
func TestWaitSharedBucketExactTotal(t *testing.T) {
	tests := []struct {
		name       string
		rate       float64
		burst      int // 0: DefaultBurst
		goroutines int
		over       time.Duration
		want       int
	}{
		{"5/s, 20 goroutines, over 10s", 5, 1, 20, 10 * time.Second, 1 + 50},
		{"0.5/s burst 4, 8 goroutines, over 20s", 0.5, 4, 8, 20 * time.Second, 4 + 10},
		{"campaign 100/s, 16 goroutines, over 5s", 100, 0, 16, 5 * time.Second, 10 + 500},
		{"30000/s, 8 goroutines, over 200ms", 30000, 0, 8, 200 * ms, 3000 + 6000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := setup(t, tt.rate, tt.burst)
			for range tt.goroutines {
				h.start(tt.want + 1)
			}
			h.runUntil(epoch().Add(tt.over))
			at := h.granted()
			if len(at) != tt.want {
				t.Fatalf("%d tokens granted over %v to %d goroutines, want %d", len(at), tt.over, tt.goroutines, tt.want)
			}
			_, burst := h.b.Limit()
			tokens := func(t time.Time) float64 { return tt.rate * t.Sub(epoch()).Seconds() }
			checkWindows(t, at, tokens, float64(burst))
		})
	}
}

func BenchmarkWaitUnlimited(b *testing.B) {
	bucket := NewBucket(0, 0, SystemClock())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bucket.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWaitAvailable measures a Wait that finds a token: the bucket
// refills far faster than the loop can take.
func BenchmarkWaitAvailable(b *testing.B) {
	bucket := NewBucket(1e12, 0, SystemClock())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if waited, err := bucket.Wait(ctx); waited != 0 || err != nil {
			b.Fatal(waited, err)
		}
	}
}

func BenchmarkWaitUnlimitedParallel(b *testing.B) {
	bucket := NewBucket(0, 0, SystemClock())
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bucket.Wait(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkWaitAvailableParallel(b *testing.B) {
	bucket := NewBucket(1e12, 0, SystemClock())
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bucket.Wait(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
