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
		{"token available, manual clock", NewBucket(1, 1<<20, NewManualClock(epoch()))},
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
