package main

import (
	"math"
	"testing"
	"time"
)

// TestLatencyOf checks the summary of a histogram as Prometheus'
// histogram_quantile computes it: linear within the bucket the 99th
// percentile falls in, the share within the 25 ms bound from its bucket.
func TestLatencyOf(t *testing.T) {
	inf := math.Inf(1)
	h, err := latencyOf([]bucket{{inf, 200}, {.01, 100}, {.025, 190}, {.05, 198}, {.1, 200}})
	if err != nil {
		t.Fatal(err)
	}
	// rank 198 is the top of the (25 ms, 50 ms] bucket.
	if h.Batches != 200 || h.Within != 0.95 || h.P99 != 50*time.Millisecond {
		t.Errorf("got %+v, want 200 batches, 0.95 within, p99 50ms", h)
	}
	h, _ = latencyOf([]bucket{{.01, 0}, {.025, 100}, {inf, 100}})
	// rank 99 of 100 in (10 ms, 25 ms]: 10 + 15 x 99/100 ms.
	if want := time.Duration(24.85 * float64(time.Millisecond)); h.P99 < want-time.Microsecond || h.P99 > want+time.Microsecond || h.Within != 1 {
		t.Errorf("got %+v, want p99 %v, all within", h, want)
	}
	if _, err := latencyOf(nil); err == nil {
		t.Error("no histogram: no error")
	}
	if h, err := latencyOf([]bucket{{.025, 0}, {inf, 0}}); err != nil || h.Batches != 0 || h.P99 != 0 {
		t.Errorf("empty histogram: %+v, %v", h, err)
	}
}
