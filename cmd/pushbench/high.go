package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/queue"
)

// highBar is the bound on the high lane's enqueue-to-first-send
// p99 while the normal lane drains a big campaign.
const highBar = 25 * time.Millisecond

// highEvery spaces the high-lane batches.
const highEvery = 10 * time.Millisecond

// highLatency is the high lane's enqueue-to-first-send latency as pushd's
// histogram pushd_enqueue_to_send_seconds{lane="high"} has it.
type highLatency struct {
	// Batches is how many the histogram counted.
	Batches int64 `json:"batches"`
	// Within is the share of them sent within highBar (a bucket bound).
	Within float64 `json:"within_25ms"`
	// P99 is the 99th percentile, interpolated in its bucket as
	// Prometheus' histogram_quantile does.
	P99 time.Duration `json:"p99_ns"`
}

func (h *highLatency) String() string {
	return fmt.Sprintf("%d batches, p99 %v, %.1f%% within %v", h.Batches, h.P99.Round(100*time.Microsecond), 100*h.Within, highBar)
}

// publishHigh publishes n single-recipient high-lane batches of campaign,
// one every highEvery, once start says so, and waits for their confirms.
func publishHigh(ctx context.Context, p *queue.Producer, campaign string, n int, start <-chan struct{}) error {
	select {
	case <-start:
	case <-ctx.Done():
		return ctx.Err()
	}
	o := synth.Options{Campaign: campaign, Recipients: n, BatchSize: 1, IOSPercent: 100, Notification: benchNotification()}
	tick := time.NewTicker(highEvery)
	defer tick.Stop()
	for b := range o.Batches() {
		body, err := json.Marshal(b)
		if err != nil {
			return err
		}
		if err := p.Publish(ctx, dispatcher.High, b.BatchID, body); err != nil {
			return fmt.Errorf("publish %s: %w", b.BatchID, err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.Wait(ctx)
}

// bucketLine is a sample of the high lane's enqueue-to-send histogram.
var bucketLine = regexp.MustCompile(`^pushd_enqueue_to_send_seconds_bucket\{lane="high",le="([^"]+)"\} (\S+)$`)

// scrapeHigh reads the high lane's enqueue-to-send histogram from pushd's
// /metrics at addr.
func scrapeHigh(ctx context.Context, addr string) (*highLatency, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape pushd: %w", err)
	}
	defer resp.Body.Close()
	var bs []bucket
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := bucketLine.FindStringSubmatch(sc.Text()); m != nil {
			le, err1 := strconv.ParseFloat(m[1], 64)
			n, err2 := strconv.ParseFloat(m[2], 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("scrape pushd: bad bucket line %q", sc.Text())
			}
			bs = append(bs, bucket{le, n})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape pushd: %w", err)
	}
	return latencyOf(bs)
}

// bucket is a cumulative histogram bucket: count observations <= le.
type bucket struct{ le, count float64 }

// latencyOf summarizes cumulative buckets (the last one +Inf).
func latencyOf(bs []bucket) (*highLatency, error) {
	slices.SortFunc(bs, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	if len(bs) == 0 || !math.IsInf(bs[len(bs)-1].le, 1) {
		return nil, fmt.Errorf("pushd has no high-lane enqueue-to-send histogram")
	}
	total := bs[len(bs)-1].count
	h := &highLatency{Batches: int64(total)}
	if total == 0 {
		return h, nil
	}
	for _, b := range bs {
		if b.le == highBar.Seconds() {
			h.Within = b.count / total
		}
	}
	// histogram_quantile: linear within the bucket the rank falls in.
	rank, lower, below := 0.99*total, 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				h.P99 = time.Duration(lower * float64(time.Second))
			} else {
				f := (rank - below) / (b.count - below)
				h.P99 = time.Duration((lower + (b.le-lower)*f) * float64(time.Second))
			}
			break
		}
		lower, below = b.le, b.count
	}
	return h, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
