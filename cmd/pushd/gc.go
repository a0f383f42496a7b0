package main

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// GC pacing. Go collects when the heap has grown by GOGC percent of what
// the last collection left live. pushd's live heap is small (4 to 9 MB
// while it drains a campaign) and every push allocates some kilobytes in
// the HTTP/2 and provider clients, so at GOGC=100 it collected every few
// MB: dozens of times a second, each time scanning the stacks of its
// hundreds of sender goroutines: on FCM, GOGC=100 cost 10–15% more CPU per
// push than this pacing (docs/benchmarks.md). The heap it keeps from
// the OS meanwhile is about twice the goal anyway.
//
// So while pushd is busy (it allocates gcBusyRate or more a second) and
// its live heap is small, tuneGC turns GOGC off and sets a soft memory
// limit of gcMemoryTarget instead: the collector then runs when the
// runtime's whole memory (heap, stacks, metadata) nears the target, which
// bounds the resident memory and collects about half as often. Idle, it
// keeps GOGC=100 and no limit, so that an idle pushd does not let its heap
// grow to the target before collecting. Once the live heap is a third of
// the target (a big blacklist, say), a limit alone would make it collect
// ever more often: tuneGC goes back to GOGC=100 and no limit, until the
// live heap is under a quarter again.
//
// An idle pushd still allocates a little (tickers, the metrics and the
// store's housekeeping), and the runtime hands the pages of its heap back
// to the OS only slowly: its resident memory crept up by some MB in the
// first minutes. Every gcIdleFree seconds of idleness tuneGC returns what
// the heap does not use (debug.FreeOSMemory: a collection, then the free
// pages handed back).
const (
	// gcMemoryTarget is the soft memory limit while the live heap is
	// small.
	gcMemoryTarget = 30 << 20
	// gcBusyRate is the allocation rate, in bytes a second, from which
	// pushd counts as busy: idle, it allocates well under 1 MB a second;
	// sending, 50 to 150 MB.
	gcBusyRate = 16 << 20
	// gcTuneEvery is how often tuneGC reads the live heap and the
	// allocations.
	gcTuneEvery = time.Second
	// gcIdleFree is how many idle readings in a row make tuneGC hand the
	// unused heap back to the OS.
	gcIdleFree = 30
)

// gcMode is how tuneGC paces the collector.
type gcMode int

const (
	gcUnset   gcMode = iota
	gcLimited        // GOGC off, memory limit gcMemoryTarget
	gcPercent        // GOGC=100, no limit
)

// nextGCMode is the mode for a live heap of live bytes and allocations of
// rate bytes a second, coming from mode cur: the live heap's thresholds
// differ by direction so that a heap near one does not flip the mode at
// every reading.
func nextGCMode(cur gcMode, live, rate uint64) gcMode {
	switch {
	case rate < gcBusyRate, live >= gcMemoryTarget/3:
		return gcPercent
	case live < gcMemoryTarget/4 || cur != gcPercent:
		return gcLimited
	}
	return cur
}

// tuneGC paces the collector from the live heap every gcTuneEvery until ctx
// ends. It does nothing when GOGC or GOMEMLIMIT is set in the environment:
// the operator's setting stands.
func tuneGC(ctx context.Context, getenv func(string) string, log *slog.Logger) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		log.Info("GOGC or GOMEMLIMIT set in the environment; pushd leaves the collector's pacing alone")
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
	mode := gcUnset
	var (
		allocs uint64
		idle   int // idle readings in a row
	)
	at := time.Now()
	tune := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 || sample[1].Value.Kind() != metrics.KindUint64 {
			return
		}
		now, total := time.Now(), sample[1].Value.Uint64()
		rate := uint64(float64(total-allocs) / max(now.Sub(at).Seconds(), 0.001))
		allocs, at = total, now
		if rate < gcBusyRate {
			idle++
			if idle%gcIdleFree == 0 {
				debug.FreeOSMemory()
			}
		} else {
			idle = 0
		}
		next := nextGCMode(mode, sample[0].Value.Uint64(), rate)
		if next == mode {
			return
		}
		switch next {
		case gcLimited:
			debug.SetMemoryLimit(gcMemoryTarget)
			debug.SetGCPercent(-1)
		case gcPercent:
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
		}
		mode = next
	}
	// The first reading sets the allocations' baseline: counted from the
	// process's start, they would make start-up look busy.
	metrics.Read(sample)
	if sample[1].Value.Kind() == metrics.KindUint64 {
		allocs = sample[1].Value.Uint64()
	}
	tune()
	t := time.NewTicker(gcTuneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			tune()
		}
	}
}
