package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushd/pushd/push/sim"
)

// pollInterval is how often the simulator's counts are read while a
// contender runs; it bounds the error on t0 and t1.
const pollInterval = 10 * time.Millisecond

// poller reads the simulator's APNs counts over GET /sim/stats, on a
// connection of its own.
type poller struct {
	client   *http.Client
	statsURL string
	interval time.Duration
}

func newPoller(simURL string, roots *x509.CertPool) *poller {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig.RootCAs = roots
	tr.MaxIdleConnsPerHost = 1
	return &poller{
		client:   &http.Client{Transport: tr, Timeout: 10 * time.Second},
		statsURL: simURL + "/sim/stats",
		interval: pollInterval,
	}
}

// close drops the poller's connection.
func (p *poller) close() { p.client.CloseIdleConnections() }

// stats returns the simulator's counts.
func (p *poller) stats(ctx context.Context) (sim.Stats, error) {
	var st sim.Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.statsURL, nil)
	if err != nil {
		return st, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return st, fmt.Errorf("simulator stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("simulator stats: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("simulator stats: %w", err)
	}
	return st, nil
}

// window is one contender's measured drain, between the poll that first saw
// a push accepted (t0) and the poll that first saw all of them (t1).
type window struct {
	T0, T1     time.Time
	Acc0, Acc1 int64         // APNs accepted at t0 and t1, less the baseline
	CPU0, CPU1 time.Duration // the contender's CPU time at t0 and t1
	// PollsInWindow counts the polls after t0 up to t1 included.
	PollsInWindow int
}

// elapsed is t1-t0.
func (w window) elapsed() time.Duration { return w.T1.Sub(w.T0) }

// pushes is the number of pushes accepted between t0 and t1.
func (w window) pushes() int64 { return w.Acc1 - w.Acc0 }

// rate is the pushes accepted between t0 and t1 per second.
func (w window) rate() float64 {
	if w.elapsed() <= 0 {
		return 0
	}
	return float64(w.pushes()) / w.elapsed().Seconds()
}

// cpu is the contender's CPU time between t0 and t1.
func (w window) cpu() time.Duration { return w.CPU1 - w.CPU0 }

// both adds up the simulator's APNs and FCM counts: one contender runs at
// a time, on either provider or both.
func both(st sim.Stats) sim.ProviderStats {
	return sim.ProviderStats{Requests: st.APNs.Requests + st.FCM.Requests, Accepted: st.APNs.Accepted + st.FCM.Accepted}
}

// measure polls the simulator until it has accepted n pushes (APNs and FCM)
// more than base (the counts before the contender started), sampling cpu at t0
// and t1. It gives up when ctx ends; the caller cancels ctx when the
// contender fails or a deadline passes.
func (p *poller) measure(ctx context.Context, base sim.ProviderStats, n int64, cpu func() (time.Duration, error)) (window, error) {
	var w window
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	started := false
	for {
		st, err := p.stats(ctx)
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return w, fmt.Errorf("%w: %d of %d accepted", context.Cause(ctx), w.Acc1, n)
			}
			return w, err
		}
		acc := both(st).Accepted - base.Accepted
		if started {
			w.PollsInWindow++
		} else if acc > 0 {
			started = true
			w.T0, w.Acc0 = now, acc
			if w.CPU0, err = cpu(); err != nil {
				return w, err
			}
		}
		w.Acc1 = acc
		if acc >= n {
			if w.PollsInWindow == 0 {
				return w, fmt.Errorf("all %d pushes were accepted within one poll interval (%v): too few to time; raise -n", n, p.interval)
			}
			w.T1 = now
			if w.CPU1, err = cpu(); err != nil {
				return w, err
			}
			return w, nil
		}
		select {
		case <-ctx.Done():
			return w, fmt.Errorf("%w: %d of %d accepted", context.Cause(ctx), acc, n)
		case <-tick.C:
		}
	}
}

// selfCPU returns the user+system CPU time of this process.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// procCPU returns a function reading the user+system CPU time of process pid
// (all its threads) from /proc/<pid>/stat. The kernel counts it in clock
// ticks of 1/tck s, usually 10 ms.
func procCPU(pid int, tck int64) func() (time.Duration, error) {
	file := fmt.Sprintf("/proc/%d/stat", pid)
	return func() (time.Duration, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return 0, err
		}
		utime, stime, err := parseStat(b)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", file, err)
		}
		return ticks(utime+stime, tck), nil
	}
}

// ticks converts clock ticks to a duration.
func ticks(n, tck int64) time.Duration {
	return time.Duration(n) * time.Second / time.Duration(tck)
}

// parseStat returns the utime and stime fields (14 and 15, in clock ticks)
// of a /proc/<pid>/stat line. The command name (field 2) is in parentheses
// and may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseStat(b []byte) (utime, stime int64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field k is f[k-3].
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	if utime, err = strconv.ParseInt(f[11], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("utime: %w", err)
	}
	if stime, err = strconv.ParseInt(f[12], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stime: %w", err)
	}
	return utime, stime, nil
}

// peakRSS returns the VmHWM (peak resident set size) of process pid, in
// bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusKB(b, "VmHWM")
}

// parseStatusKB returns the value of a "Key:   123 kB" line of
// /proc/<pid>/status, in bytes.
func parseStatusKB(b []byte, key string) (int64, error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected %q", key, strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s line", key)
}

// atClkTck is the auxiliary vector entry holding the clock tick rate.
const atClkTck = 17

// clockTicks returns the rate of the clock ticks /proc counts CPU time in
// (sysconf(_SC_CLK_TCK)), read from this process's auxiliary vector; 100,
// the value on every common Linux, if that fails.
func clockTicks() int64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	if v, ok := auxv(b, atClkTck); ok && v > 0 {
		return int64(v)
	}
	return 100
}

// auxv looks key up in an auxiliary vector of native-endian 64-bit pairs.
func auxv(b []byte, key uint64) (uint64, bool) {
	for ; len(b) >= 16; b = b[16:] {
		k, v := binary.NativeEndian.Uint64(b), binary.NativeEndian.Uint64(b[8:])
		if k == key {
			return v, true
		}
		if k == 0 { // AT_NULL
			break
		}
	}
	return 0, false
}

// readiness is what waitReady saw of a starting pushd.
type readiness struct {
	// after is the time from the process's start to the first /readyz
	// answered 200.
	after time.Duration
	// blacklist is pushd_list_entries{list="blacklist"} at that time.
	blacklist int
	err       error
}

// blacklistSeries is the series of pushd's metrics that counts the
// entries of its in-memory blacklist.
const blacklistSeries = `pushd_list_entries{list="blacklist"}`

// waitReady polls GET /readyz of pushd's metrics server at addr every
// interval from the start of c until it answers 200 (pushd has loaded its
// lists, connected to RabbitMQ and consumes), then reads the size of its
// blacklist from /metrics. It gives up when ctx ends or c exits.
func waitReady(ctx context.Context, c *child, addr string, interval time.Duration) readiness {
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	get := func(path string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return 0, nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, body, err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		// Refused connections until pushd listens, 503 until it is ready.
		if code, _, err := get("/readyz"); err == nil && code == http.StatusOK {
			rd := readiness{after: time.Since(c.started)}
			code, body, err := get("/metrics")
			switch {
			case err != nil:
				rd.err = fmt.Errorf("metrics: %w", err)
			case code != http.StatusOK:
				rd.err = fmt.Errorf("metrics: status %d", code)
			default:
				var v float64
				v, rd.err = parseGauge(body, blacklistSeries)
				rd.blacklist = int(v)
			}
			return rd
		}
		select {
		case <-ctx.Done():
			return readiness{err: fmt.Errorf("no 200 from /readyz within %v of the start: %w",
				time.Since(c.started).Round(time.Millisecond), context.Cause(ctx))}
		case <-c.exited:
			return readiness{err: errors.New("exited before /readyz answered 200")}
		case <-tick.C:
		}
	}
}

// parseGauge returns the value of series (name{labels}, as written) in a
// Prometheus text exposition.
func parseGauge(body []byte, series string) (float64, error) {
	for line := range strings.Lines(string(body)) {
		v, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", series, err)
		}
		return f, nil
	}
	return 0, fmt.Errorf("no %s in the metrics", series)
}
