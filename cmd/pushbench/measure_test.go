package main

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/push/sim"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name         string
		line         string
		utime, stime int64
		err          string
	}{
		{
			name:  "plain",
			line:  "4242 (pushd) S 1 4242 4242 0 -1 4194560 1234 0 0 0 731 112 0 0 20 0 9 0 5000 1000000 3000 18446744073709551615\n",
			utime: 731, stime: 112,
		},
		{
			name:  "command with spaces and parentheses",
			line:  "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1",
			utime: 5, stime: 6,
		},
		{name: "no command", line: "7 pushd S 1", err: "no command name"},
		{name: "truncated", line: "7 (pushd) S 1 7 7 0 -1 0 0 0 0 0 5", err: "fields after the command name"},
		{name: "not a number", line: "7 (pushd) S 1 7 7 0 -1 0 0 0 0 0 x 6 0", err: "utime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, s, err := parseStat([]byte(tc.line))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %d, %d, %v; want error with %q", u, s, err, tc.err)
				}
				return
			}
			if err != nil || u != tc.utime || s != tc.stime {
				t.Fatalf("got %d, %d, %v; want %d, %d", u, s, err, tc.utime, tc.stime)
			}
		})
	}
}

func TestProcCPUCountsThisProcess(t *testing.T) {
	cpu := procCPU(os.Getpid(), clockTicks())
	before, err := cpu()
	if err != nil {
		t.Fatal(err)
	}
	self0, _ := selfCPU()
	if burn(200*time.Millisecond) == 0 {
		t.Fatal("no spin")
	}
	after, err := cpu()
	if err != nil {
		t.Fatal(err)
	}
	self1, _ := selfCPU()
	// /proc counts in clock ticks (10 ms), getrusage finer: they agree
	// within a few ticks.
	got, want := after-before, self1-self0
	if got < want-50*time.Millisecond || got > want+50*time.Millisecond {
		t.Errorf("/proc/self/stat says %v of CPU, getrusage %v", got, want)
	}
	if _, err := procCPU(1<<30, 100)(); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

// burn keeps a CPU busy for d.
func burn(d time.Duration) (spins int) {
	for end := time.Now().Add(d); time.Now().Before(end); spins++ {
	}
	return spins
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tpushd\nVmPeak:\t 1300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n"
	if got, err := parseStatusKB([]byte(status), "VmHWM"); err != nil || got != 51200<<10 {
		t.Errorf("VmHWM: got %d, %v", got, err)
	}
	if _, err := parseStatusKB([]byte(status), "VmSwap"); err == nil {
		t.Error("no error for a missing key")
	}
	if _, err := parseStatusKB([]byte("VmHWM:\t12 MB\n"), "VmHWM"); err == nil {
		t.Error("no error for an unexpected unit")
	}
	rss, err := peakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("peak RSS of this test: %d, %v", rss, err)
	}
}

func TestAuxv(t *testing.T) {
	var b []byte
	for _, kv := range [][2]uint64{{6, 4096}, {atClkTck, 250}, {0, 0}, {atClkTck, 1}} {
		b = binary.NativeEndian.AppendUint64(b, kv[0])
		b = binary.NativeEndian.AppendUint64(b, kv[1])
	}
	if v, ok := auxv(b, atClkTck); !ok || v != 250 {
		t.Errorf("AT_CLKTCK: got %d, %v", v, ok)
	}
	if _, ok := auxv(b, 99); ok {
		t.Error("found a key past AT_NULL")
	}
	if tck := clockTicks(); tck <= 0 {
		t.Errorf("clockTicks() = %d", tck)
	}
}

// startSim starts an in-process simulator for the test.
func startSim(t *testing.T, cfg sim.Config) *sim.Server {
	t.Helper()
	s, err := sim.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func TestMeasureTimesTheDrain(t *testing.T) {
	s := startSim(t, sim.Config{Latency: 2 * time.Millisecond})
	p := newPoller(s.URL(), s.CertPool())
	defer p.close()
	bc, err := newBareClient(s.URL(), s.CertPool())
	if err != nil {
		t.Fatal(err)
	}
	defer bc.close()
	ctx := t.Context()

	// Something accepted before the run is the baseline, not part of it.
	if err := bc.push(ctx, randomTokens(10), 2); err != nil {
		t.Fatal(err)
	}
	base, err := p.stats(ctx)
	if err != nil || base.APNs.Accepted != 10 {
		t.Fatalf("baseline %+v, %v", base.APNs, err)
	}

	const n = 4000
	done := make(chan error, 1)
	go func() { done <- bc.push(ctx, randomTokens(n), 32) }()
	samples := 0
	w, err := p.measure(ctx, base.APNs, n, func() (time.Duration, error) { samples++; return selfCPU() })
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("window %v, %d pushes, %.0f/s, CPU %v, %d polls", w.elapsed(), w.pushes(), w.rate(), w.cpu(), w.PollsInWindow)
	switch {
	case samples != 2:
		t.Errorf("CPU sampled %d times, want 2 (t0 and t1)", samples)
	case w.Acc1 != n:
		t.Errorf("accepted at t1: %d, want %d", w.Acc1, n)
	case w.Acc0 < 1 || w.Acc0 >= n:
		t.Errorf("accepted at t0: %d", w.Acc0)
	case !w.T1.After(w.T0) || w.PollsInWindow < 1:
		t.Errorf("t0 %v, t1 %v, %d polls", w.T0, w.T1, w.PollsInWindow)
	case w.rate() <= 0 || w.cpu() <= 0:
		t.Errorf("rate %v, cpu %v", w.rate(), w.cpu())
	}
	smp := newSample(w)
	if smp.Pushes != n-w.Acc0 || smp.CPUPer100k <= 0 {
		t.Errorf("sample %+v", smp)
	}
}

func TestMeasureStopsWithItsContext(t *testing.T) {
	s := startSim(t, sim.Config{})
	p := newPoller(s.URL(), s.CertPool())
	defer p.close()
	base, err := p.stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("pushd exited while draining")
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	_, err = p.measure(ctx, base.APNs, 10, selfCPU)
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "0 of 10 accepted") {
		t.Fatalf("got %v", err)
	}
}

func TestParseGauge(t *testing.T) {
	body := []byte(`# HELP pushd_list_entries Entries of a list in this instance's in-memory index.
# TYPE pushd_list_entries gauge
pushd_list_entries{list="blacklist"} 1e+06
pushd_list_entries{list="whitelist"} 0
`)
	if v, err := parseGauge(body, blacklistSeries); err != nil || v != 1e6 {
		t.Errorf("blacklist: got %v, %v", v, err)
	}
	if v, err := parseGauge(body, `pushd_list_entries{list="whitelist"}`); err != nil || v != 0 {
		t.Errorf("whitelist: got %v, %v", v, err)
	}
	if _, err := parseGauge(body, "pushd_list_entries"); err == nil {
		t.Error("no error for a series that is not there")
	}
	if _, err := parseGauge([]byte(blacklistSeries+" many\n"), blacklistSeries); err == nil {
		t.Error("no error for a value that is not a number")
	}
}

// fakePushd serves /readyz (503 until ready is closed, then 200) and
// /metrics (metrics) like pushd's metrics server; it returns its address
// and a child that started now.
func fakePushd(t *testing.T, ready <-chan struct{}, metrics string) (string, *child) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-ready:
			_, _ = w.Write([]byte("ready\n"))
		default:
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(metrics))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &child{name: "pushd", started: time.Now(), exited: make(chan struct{})}
}

func TestWaitReady(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		ready := make(chan struct{})
		addr, c := fakePushd(t, ready, blacklistSeries+" 1000\n")
		time.AfterFunc(100*time.Millisecond, func() { close(ready) })
		rd := waitReady(t.Context(), c, addr, time.Millisecond)
		if rd.err != nil || rd.blacklist != 1000 || rd.after < 100*time.Millisecond || rd.after > 10*time.Second {
			t.Errorf("got %+v", rd)
		}
	})
	t.Run("no blacklist series", func(t *testing.T) {
		ready := make(chan struct{})
		close(ready)
		addr, c := fakePushd(t, ready, "go_goroutines 12\n")
		if rd := waitReady(t.Context(), c, addr, time.Millisecond); rd.err == nil || rd.after <= 0 {
			t.Errorf("got %+v", rd)
		}
	})
	t.Run("exited", func(t *testing.T) {
		addr, c := fakePushd(t, make(chan struct{}), "")
		time.AfterFunc(20*time.Millisecond, func() { close(c.exited) })
		if rd := waitReady(t.Context(), c, addr, time.Millisecond); rd.err == nil || !strings.Contains(rd.err.Error(), "exited") {
			t.Errorf("got %+v", rd)
		}
	})
	t.Run("not listening", func(t *testing.T) {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, c := fakePushd(t, nil, "")
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if rd := waitReady(ctx, c, addr, time.Millisecond); !errors.Is(rd.err, context.DeadlineExceeded) {
			t.Errorf("got %+v", rd)
		}
	})
}
