package ratelimit_test

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/pushd/pushd/ratelimit"
)

// A campaign limited to 5 pushes a second sends its first push at once and
// then one every 200ms. The ManualClock stands in for time: the loop moves it
// on each time the sender is blocked waiting for its next token.
func ExampleBucket() {
	clock := ratelimit.NewManualClock(time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC))
	campaign := ratelimit.NewBucket(5, 0, clock) // burst 0: DefaultBurst(5) = 1
	start := clock.Now()

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 4; i++ {
			waited, err := campaign.Wait(context.Background())
			if err != nil {
				fmt.Println(err)
				return
			}
			fmt.Printf("push %d at +%v, waited %v\n", i, clock.Now().Sub(start), waited)
		}
	}()

	for range 3 {
		for clock.Waiters() == 0 { // the sender is not blocked yet
			runtime.Gosched()
		}
		clock.Advance(200 * time.Millisecond)
	}
	<-done
	// Output:
	// push 1 at +0s, waited 0s
	// push 2 at +200ms, waited 200ms
	// push 3 at +400ms, waited 200ms
	// push 4 at +600ms, waited 200ms
}

// A provider limited to 2 pushes a second with a burst of 3 lets three pushes
// through at once from a full bucket, then one every 500ms. Left idle for a
// second and a half, the bucket saves up three tokens again (never more than
// the burst), so the next three go at once too.
func ExampleBucket_burst() {
	clock := ratelimit.NewManualClock(time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC))
	provider := ratelimit.NewBucket(2, 3, clock)
	start := clock.Now()
	push := func(i int) {
		waited, err := provider.Wait(context.Background())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("push %d at +%v, waited %v\n", i, clock.Now().Sub(start), waited)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 5; i++ {
			push(i)
		}
	}()
	for range 2 {
		for clock.Waiters() == 0 { // the sender is not blocked yet
			runtime.Gosched()
		}
		clock.Advance(500 * time.Millisecond)
	}
	<-done

	clock.Advance(1500 * time.Millisecond) // idle: three tokens saved
	for i := 6; i <= 8; i++ {
		push(i)
	}
	// Output:
	// push 1 at +0s, waited 0s
	// push 2 at +0s, waited 0s
	// push 3 at +0s, waited 0s
	// push 4 at +500ms, waited 500ms
	// push 5 at +1s, waited 500ms
	// push 6 at +2.5s, waited 0s
	// push 7 at +2.5s, waited 0s
	// push 8 at +2.5s, waited 0s
}

// An operator speeds up a campaign that was crawling at one push every 10
// seconds. The sender already waiting for its token does not sleep out its 10
// seconds: at 100/s its token comes due 10ms later.
func ExampleBucket_Set() {
	clock := ratelimit.NewManualClock(time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC))
	campaign := ratelimit.NewBucket(0.1, 1, clock)
	ctx := context.Background()
	if _, err := campaign.Wait(ctx); err != nil { // the one token in the bucket
		fmt.Println(err)
		return
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		waited, err := campaign.Wait(ctx) // due in 10s at 0.1/s
		fmt.Printf("second push waited %v, err %v\n", waited, err)
	}()
	for clock.Waiters() == 0 {
		runtime.Gosched()
	}

	campaign.Set(100, 0)
	perSecond, burst := campaign.Limit()
	fmt.Printf("rate %v/s, burst %d\n", perSecond, burst)
	clock.Advance(10 * time.Millisecond)
	<-done

	campaign.Set(0, 0) // unlimited: Wait returns at once
	waited, err := campaign.Wait(ctx)
	fmt.Printf("unlimited: %v, waited %v, err %v\n", campaign.Unlimited(), waited, err)
	// Output:
	// rate 100/s, burst 10
	// second push waited 10ms, err <nil>
	// unlimited: true, waited 0s, err <nil>
}
