package ratelimit

import (
	"slices"
	"testing"
	"time"
)

func TestManualClock(t *testing.T) {
	tests := []struct {
		name    string
		timers  []time.Duration // made at epoch, in this order
		stop    []int           // timers to stop before advancing
		advance []time.Duration // successive calls to Advance
		fired   []int           // timers that fired, in index order
		waiters int             // pending afterwards
	}{
		{"nothing due", []time.Duration{time.Second}, nil, []time.Duration{999 * ms}, nil, 1},
		{"due exactly", []time.Duration{time.Second}, nil, []time.Duration{time.Second}, []int{0}, 0},
		{"all due", []time.Duration{3 * time.Second, time.Second, 2 * time.Second},
			nil, []time.Duration{5 * time.Second}, []int{0, 1, 2}, 0},
		{"over several advances", []time.Duration{time.Second, 3 * time.Second, 2 * time.Second},
			nil, []time.Duration{1500 * ms, 1500 * ms}, []int{0, 1, 2}, 0},
		{"partly", []time.Duration{time.Second, 3 * time.Second},
			nil, []time.Duration{2 * time.Second}, []int{0}, 1},
		{"stopped timers never fire", []time.Duration{time.Second, 2 * time.Second, 3 * time.Second},
			[]int{1}, []time.Duration{5 * time.Second}, []int{0, 2}, 0},
		{"zero or negative duration fires at once", []time.Duration{0, -time.Second, time.Second},
			nil, nil, []int{0, 1}, 1},
		{"advance by zero", []time.Duration{time.Second}, nil, []time.Duration{0}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewManualClock(epoch())
			timers := make([]Timer, len(tt.timers))
			for i, d := range tt.timers {
				timers[i] = c.NewTimer(d)
			}
			for _, i := range tt.stop {
				if !timers[i].Stop() {
					t.Fatalf("Stop of pending timer %d = false", i)
				}
			}
			total := time.Duration(0)
			for _, d := range tt.advance {
				c.Advance(d)
				total += d
			}

			var fired []int
			for i, tm := range timers {
				select {
				case v := <-tm.C():
					fired = append(fired, i)
					if want := epoch().Add(max(tt.timers[i], 0)); !v.Equal(want) {
						t.Errorf("timer %d carried %v, want its deadline %v", i, v, want)
					}
				default:
				}
			}
			if !slices.Equal(fired, tt.fired) {
				t.Errorf("fired %v, want %v", fired, tt.fired)
			}
			if got := c.Waiters(); got != tt.waiters {
				t.Errorf("Waiters() = %d, want %d", got, tt.waiters)
			}
			if got, want := c.Now(), epoch().Add(total); !got.Equal(want) {
				t.Errorf("Now() = %v, want %v", got, want)
			}
			for _, i := range tt.fired {
				if timers[i].Stop() {
					t.Errorf("Stop of fired timer %d = true", i)
				}
			}
		})
	}
}

func TestManualClockAdvanceNegativePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Advance(-1) did not panic")
		}
	}()
	NewManualClock(epoch()).Advance(-1)
}

func TestSystemClock(t *testing.T) {
	c := SystemClock()
	before := time.Now()
	if now := c.Now(); now.Before(before) {
		t.Fatalf("Now() = %v, before time.Now() %v", now, before)
	}
	fire := c.NewTimer(time.Millisecond)
	select {
	case <-fire.C():
	case <-time.After(5 * time.Second):
		t.Fatal("a 1ms timer did not fire within 5s")
	}
	if fire.Stop() {
		t.Error("Stop of a fired timer = true")
	}
	stop := c.NewTimer(time.Hour)
	if !stop.Stop() {
		t.Error("Stop of a pending timer = false")
	}
}
