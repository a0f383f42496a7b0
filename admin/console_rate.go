package admin

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rateSampler keeps the recent counters of the campaigns the console
// looks at, each time it reads them (a page, or a poll of the progress
// every second), so that it can tell the sends per second now, an ETA
// and a chart of the last minute. The counters come from the store, so
// they are the cluster's; the samples are this instance's, and start
// when somebody first looks. It is bounded: maxRateSeries campaigns, the
// least recently looked at forgotten first, and rateKeep of samples each.
type rateSampler struct {
	now func() time.Time

	mu     sync.Mutex
	series map[string]*rateSeries
}

// rateSample is a campaign's counters at a time.
type rateSample struct {
	at time.Time
	// sent counts the recipients sent; done those resolved one way or
	// another (sent, failed, filtered, dropped or cancelled).
	sent, done int64
}

type rateSeries struct {
	samples []rateSample
	seen    time.Time
}

const (
	// rateWindow is what the current rate is measured over.
	rateWindow = 3 * time.Second
	// chartSpan is what the chart shows.
	chartSpan = time.Minute
	// rateKeep is how long samples are kept.
	rateKeep = chartSpan + rateWindow
	// rateGap: samples closer together than this are not kept.
	rateGap = 250 * time.Millisecond
	// maxRateSeries bounds the campaigns sampled at once.
	maxRateSeries = 1000

	// The chart's size, in the units of its viewBox.
	chartWidth, chartHeight = 300, 60
)

func newRateSampler(now func() time.Time) *rateSampler {
	return &rateSampler{now: now, series: make(map[string]*rateSeries)}
}

// rates is what the samples tell about a campaign.
type rates struct {
	// Known: there are samples far enough apart to tell.
	Known bool
	// Sent and Done are per second, over the last rateWindow.
	Sent, Done float64
	// Points is the chart of sends per second: an SVG polyline's points
	// in a chartWidth × chartHeight box, newest at the right.
	Points string
	// Top is the rate at the top of the chart.
	Top float64
}

// observe records campaign id's counters now and returns its rates.
func (rs *rateSampler) observe(id string, sent, done int64) rates {
	now := rs.now()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	sr := rs.series[id]
	if sr == nil {
		if len(rs.series) >= maxRateSeries {
			rs.forgetOldest()
		}
		sr = &rateSeries{}
		rs.series[id] = sr
	}
	sr.seen = now
	cur := rateSample{at: now, sent: sent, done: done}
	if n := len(sr.samples); n > 0 {
		last := sr.samples[n-1]
		if cur.sent < last.sent || cur.done < last.done || now.Before(last.at) {
			sr.samples = sr.samples[:0] // not the same campaign any more, or the clock went back
		}
	}
	drop := 0
	for drop < len(sr.samples) && now.Sub(sr.samples[drop].at) > rateKeep {
		drop++
	}
	sr.samples = append(sr.samples[:0], sr.samples[drop:]...)
	if n := len(sr.samples); n == 0 || now.Sub(sr.samples[n-1].at) >= rateGap {
		sr.samples = append(sr.samples, cur)
	}
	return ratesOf(sr.samples, cur)
}

// forgetOldest forgets the campaign looked at least recently.
func (rs *rateSampler) forgetOldest() {
	var oldest string
	var at time.Time
	for id, sr := range rs.series {
		if oldest == "" || sr.seen.Before(at) {
			oldest, at = id, sr.seen
		}
	}
	delete(rs.series, oldest)
}

// ratesOf computes the rates of samples up to cur, which is the last one
// or newer.
func ratesOf(samples []rateSample, cur rateSample) rates {
	var r rates
	// The current rate: from the newest sample at least rateWindow old,
	// or the oldest there is.
	var from *rateSample
	for i := range samples {
		if cur.at.Sub(samples[i].at) >= rateWindow || from == nil {
			from = &samples[i]
		}
	}
	if from != nil {
		if d := cur.at.Sub(from.at).Seconds(); d >= rateGap.Seconds() {
			r.Known = true
			r.Sent = float64(cur.sent-from.sent) / d
			r.Done = float64(cur.done-from.done) / d
		}
	}

	// The chart: the rate of each interval between samples, at its end.
	type point struct {
		age  time.Duration
		rate float64
	}
	var pts []point
	all := samples
	if n := len(samples); n > 0 && cur.at.After(samples[n-1].at) {
		all = append(all[:n:n], cur)
	}
	for i := 1; i < len(all); i++ {
		d := all[i].at.Sub(all[i-1].at).Seconds()
		if d <= 0 {
			continue
		}
		rate := float64(all[i].sent-all[i-1].sent) / d
		pts = append(pts, point{age: cur.at.Sub(all[i].at), rate: rate})
		r.Top = max(r.Top, rate)
	}
	r.Top = niceCeiling(r.Top)
	var b strings.Builder
	for _, p := range pts {
		if p.age > chartSpan {
			continue
		}
		x := chartWidth * (1 - p.age.Seconds()/chartSpan.Seconds())
		y := chartHeight - (chartHeight-2)*p.rate/r.Top
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	}
	r.Points = b.String()
	return r
}

// niceCeiling rounds v up to 1, 2 or 5 times a power of ten; at least 1.
func niceCeiling(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// formatETA writes how long remaining recipients take at perSecond; ""
// when it can't be told.
func formatETA(remaining int64, perSecond float64) string {
	if remaining <= 0 {
		return "0s"
	}
	if perSecond <= 0 {
		return ""
	}
	d := time.Duration(float64(remaining) / perSecond * float64(time.Second))
	if d > 30*24*time.Hour {
		return "more than 30 days"
	}
	if d < time.Hour {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}
