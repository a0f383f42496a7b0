package main

import "testing"

func TestNextGCMode(t *testing.T) {
	const busy, idle = gcBusyRate, gcBusyRate - 1
	for _, tc := range []struct {
		cur        gcMode
		live, rate uint64
		want       gcMode
	}{
		// Idle: GOGC=100, whatever the heap.
		{gcUnset, 0, 0, gcPercent},
		{gcLimited, 5 << 20, idle, gcPercent},
		// Busy with a small live heap: the memory limit.
		{gcUnset, 5 << 20, busy, gcLimited},
		{gcPercent, 5 << 20, busy, gcLimited},
		{gcLimited, gcMemoryTarget/3 - 1, busy, gcLimited},
		// A third of the target or more: GOGC=100.
		{gcUnset, gcMemoryTarget / 3, busy, gcPercent},
		{gcLimited, gcMemoryTarget / 3, busy, gcPercent},
		{gcLimited, 200 << 20, busy, gcPercent},
		// Between a quarter and a third of the target the mode stays.
		{gcPercent, gcMemoryTarget/3 - 1, busy, gcPercent},
		{gcPercent, gcMemoryTarget / 4, busy, gcPercent},
		{gcPercent, gcMemoryTarget/4 - 1, busy, gcLimited},
		{gcUnset, gcMemoryTarget / 4, busy, gcLimited},
	} {
		if got := nextGCMode(tc.cur, tc.live, tc.rate); got != tc.want {
			t.Errorf("nextGCMode(%d, %d, %d) = %d, want %d", tc.cur, tc.live, tc.rate, got, tc.want)
		}
	}
}
