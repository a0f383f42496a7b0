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
			Order: order(i+1, ""),
			Bare:  &sample{PerSecond: r[0], CPUPer100k: 4, PeakRSS: 20 << 20},
			Pushd: &sample{PerSecond: r[1], CPUPer100k: 5, PeakRSS: 50 << 20},
		})
	}
	return rr
}

func TestReport(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rounds []roundResult
		want   []string
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
		},
		{
			name:   "bar missed",
			rounds: rounds([2]float64{20000, 10000}),
			want:   []string{"0.500", "NOT MET, median ratio 0.500"},
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
			r.summarize()
			var out bytes.Buffer
			r.printTable(&out)
			t.Log("\n" + out.String())
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("table lacks %q", w)
				}
			}
			if strings.Contains(tc.name, "missed") && strings.Contains(out.String(), ": MET") {
				t.Error("a missed bar reported as met")
			}

			out.Reset()
			r.printJSON(&out)
			var back report
			if err := json.Unmarshal(out.Bytes(), &back); err != nil {
				t.Fatalf("JSON: %v\n%s", err, out.String())
			}
			if (back.BarMet == nil) != (r.BarMet == nil) || back.Median != r.Median || len(back.Rounds) != len(r.Rounds) {
				t.Errorf("JSON round trip: %+v", back)
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
