package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median reordered its input: %v", tc.in)
			}
		}
	}
}

// rounds builds round results from (bare/s, pushd/s) pairs, with CPU
// figures of 4 and 5 s per 100k.
func rounds(rates ...[2]float64) []roundResult {
	var rr []roundResult
	for i, r := range rates {
		rr = append(rr, roundResult{
			Round: i + 1,
			Order: order(i+1, []string{bare, pushd}),
			Bare:  &sample{PerSecond: r[0], CPUPer100k: 4, PeakRSS: 20 << 20},
			Pushd: &sample{PerSecond: r[1], CPUPer100k: 5, PeakRSS: 50 << 20},
		})
	}
	return rr
}

// withBlacklist adds pushd+blacklist samples to rounds, at the given
// rates, with CPU figures of 5.5 s per 100k, an RSS of 70 MB and a
// start-up of 2.5 s (pushd's: 0.2 s).
func withBlacklist(rr []roundResult, rates ...float64) []roundResult {
	for i := range rr {
		rr[i].Order = order(i+1, []string{bare, pushd, pushdBlacklist})
		rr[i].Pushd.Ready = 200 * time.Millisecond
		rr[i].Blacklist = &sample{PerSecond: rates[i], CPUPer100k: 5.5, PeakRSS: 70 << 20, Ready: 2500 * time.Millisecond}
	}
	return rr
}

func TestReport(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rounds    []roundResult
		blacklist int
		want      []string
		wantNot   []string
	}{
		{
			name:   "bar met",
			rounds: rounds([2]float64{20000, 18000}, [2]float64{21000, 16000}, [2]float64{19000, 17000}),
			want: []string{
				"command:  pushbench -n 100000 -rounds 3",
				"bare,pushd", "pushd,bare",
				// Medians: rates 20000 and 17000; ratio of the rounds'
				// ratios 0.9, 0.762, 0.895 is 0.895.
				"median  ", "20000", "17000", "0.895", "1.250", "20.0", "50.0",
				"MET, median ratio 0.895",
			},
			wantNot: []string{"blacklist"},
		},
		{
			name:    "bar missed",
			rounds:  rounds([2]float64{20000, 10000}),
			want:    []string{"0.500", "bar (pushd >= 0.8 x bare notifications/s): NOT MET, median ratio 0.500"},
			wantNot: []string{"notifications/s): MET"},
		},
		{
			name: "blacklist bar met",
			rounds: withBlacklist(rounds([2]float64{20000, 18000}, [2]float64{21000, 16000}, [2]float64{19000, 17000}),
				17640, 15000, 16490),
			blacklist: 1000000,
			want: []string{
				"blacklist of pushd+blacklist: 1000000 random entries (500000 user ids, 500000 tokens), none a recipient's; imported into the store in 12.345s",
				"bare,pushd,pushd+blacklist", "pushd,pushd+blacklist,bare", "pushd+blacklist,bare,pushd",
				"pushd+blacklist: pushd with 1000000 blacklist entries loaded",
				"pushd+blacklist/s", "blacklist/pushd", "pushd+blacklist ready s",
				// Ratios 0.98, 0.9375, 0.97: median 0.970; rates 17000
				// and 16490; CPU 5.5 over 5.
				"0.980", "0.938", "16490", "1.100", "70.0", "0.20", "2.50",
				"bar (pushd >= 0.8 x bare notifications/s): MET, median ratio 0.895",
				"blacklist bar (pushd+blacklist >= 0.95 x pushd notifications/s, 1000000 entries): MET, median ratio 0.970",
				"Ready: from the start of pushd's process",
			},
		},
		{
			name:      "blacklist bar missed",
			rounds:    withBlacklist(rounds([2]float64{20000, 18000}), 17000),
			blacklist: 1000000,
			want:      []string{"0.944", "blacklist bar (pushd+blacklist >= 0.95 x pushd notifications/s, 1000000 entries): NOT MET, median ratio 0.944"},
			wantNot:   []string{"entries): MET"},
		},
		{
			name:      "blacklist only",
			rounds:    []roundResult{{Round: 1, Order: []string{pushdBlacklist}, Blacklist: &sample{PerSecond: 17000, CPUPer100k: 5, Ready: time.Second}}},
			blacklist: 1000,
			want:      []string{"17000", "1.00", "bar (pushd >= 0.8 x bare notifications/s): not judged", "entries): not judged, no round ran both pushd and pushd+blacklist"},
		},
		{
			name:   "bare only",
			rounds: []roundResult{{Round: 1, Order: []string{bare}, Bare: &sample{PerSecond: 20000, CPUPer100k: 4}}},
			want:   []string{"20000", "not judged"},
		},
		{
			name:   "a failed round",
			rounds: []roundResult{{Round: 1, Order: []string{bare, pushd}, Bare: &sample{PerSecond: 20000, CPUPer100k: 4, Notes: []string{"odd"}}}},
			want:   []string{"round 1: NOTE: odd", "not judged"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &report{
				Command:  "pushbench -n 100000 -rounds 3",
				Settings: "-n 100000",
				N:        100000,
				Machine:  machine{OS: "linux", Arch: "amd64", CPUs: 2, GoVersion: "go1.26"},
				Started:  time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC),
				ClockTck: 100,
				Rounds:   tc.rounds,
			}
			if tc.blacklist > 0 {
				r.Blacklist, r.BlacklistUsers, r.BlacklistImport = tc.blacklist, tc.blacklist/2, 12345*time.Millisecond
			}
			r.summarize()
			var out bytes.Buffer
			r.printTable(&out)
			t.Log("\n" + out.String())
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("table lacks %q", w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(out.String(), w) {
					t.Errorf("table has %q", w)
				}
			}

			out.Reset()
			r.printJSON(&out)
			var back report
			if err := json.Unmarshal(out.Bytes(), &back); err != nil {
				t.Fatalf("JSON: %v\n%s", err, out.String())
			}
			if (back.BarMet == nil) != (r.BarMet == nil) || (back.BlacklistBarMet == nil) != (r.BlacklistBarMet == nil) ||
				back.Median != r.Median || len(back.Rounds) != len(r.Rounds) ||
				back.Blacklist != r.Blacklist || back.BlacklistImport != r.BlacklistImport {
				t.Errorf("JSON round trip: %+v", back)
			}
			for i, rr := range back.Rounds {
				if (rr.Blacklist == nil) != (r.Rounds[i].Blacklist == nil) ||
					rr.Blacklist != nil && rr.Blacklist.Ready != r.Rounds[i].Blacklist.Ready {
					t.Errorf("JSON round trip: round %d: %+v", i+1, rr)
				}
			}
			if r.Blacklist == 0 && strings.Contains(out.String(), "blacklist") {
				t.Errorf("JSON mentions a blacklist that was not asked for:\n%s", out.String())
			}
		})
	}
}

func TestThisMachine(t *testing.T) {
	m := thisMachine()
	if m.CPUs < 1 || m.GoVersion == "" || !strings.Contains(m.String(), "CPUs") {
		t.Errorf("machine %+v", m)
	}
}
