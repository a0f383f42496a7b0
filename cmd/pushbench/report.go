package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// bar is the share of the bare client's rate pushd must reach (the issue's
// acceptance bar).
const bar = 0.8

// blacklistBar is the share of pushd's rate pushd+blacklist must reach:
// filtering must not lower throughput by more than 5% (the lists issue).
const blacklistBar = 0.95

// roundResult is one round: each contender's sample (nil when it did not
// run or failed) in the order they ran.
type roundResult struct {
	Round     int      `json:"round"`
	Order     []string `json:"order"`
	Bare      *sample  `json:"bare,omitempty"`
	Pushd     *sample  `json:"pushd,omitempty"`
	Blacklist *sample  `json:"pushd_blacklist,omitempty"`
}

// ratio is pushd's rate over the bare client's; 0 when one is missing.
func (r roundResult) ratio() float64 {
	if r.Bare == nil || r.Pushd == nil || r.Bare.PerSecond == 0 {
		return 0
	}
	return r.Pushd.PerSecond / r.Bare.PerSecond
}

// cpuRatio is pushd's CPU per push over the bare client's; 0 when one is
// missing.
func (r roundResult) cpuRatio() float64 {
	if r.Bare == nil || r.Pushd == nil || r.Bare.CPUPer100k == 0 {
		return 0
	}
	return r.Pushd.CPUPer100k / r.Bare.CPUPer100k
}

// blacklistRatio is pushd+blacklist's rate over pushd's; 0 when one is
// missing.
func (r roundResult) blacklistRatio() float64 {
	if r.Pushd == nil || r.Blacklist == nil || r.Pushd.PerSecond == 0 {
		return 0
	}
	return r.Blacklist.PerSecond / r.Pushd.PerSecond
}

// blacklistCPURatio is pushd+blacklist's CPU per push over pushd's; 0 when
// one is missing.
func (r roundResult) blacklistCPURatio() float64 {
	if r.Pushd == nil || r.Blacklist == nil || r.Pushd.CPUPer100k == 0 {
		return 0
	}
	return r.Blacklist.CPUPer100k / r.Pushd.CPUPer100k
}

// summary holds the median of each column over the rounds that have it; 0
// means no round has it. The Blacklist fields are pushd+blacklist's.
type summary struct {
	BarePerSecond   float64 `json:"bare_per_second,omitempty"`
	PushdPerSecond  float64 `json:"pushd_per_second,omitempty"`
	Ratio           float64 `json:"ratio,omitempty"`
	BareCPUPer100k  float64 `json:"bare_cpu_seconds_per_100k,omitempty"`
	PushdCPUPer100k float64 `json:"pushd_cpu_seconds_per_100k,omitempty"`
	CPURatio        float64 `json:"cpu_ratio,omitempty"`
	BarePeakRSS     float64 `json:"bare_peak_rss_bytes,omitempty"`
	PushdPeakRSS    float64 `json:"pushd_peak_rss_bytes,omitempty"`
	PushdReady      float64 `json:"pushd_ready_seconds,omitempty"`

	BlacklistPerSecond  float64 `json:"pushd_blacklist_per_second,omitempty"`
	BlacklistRatio      float64 `json:"pushd_blacklist_ratio,omitempty"` // over pushd
	BlacklistCPUPer100k float64 `json:"pushd_blacklist_cpu_seconds_per_100k,omitempty"`
	BlacklistCPURatio   float64 `json:"pushd_blacklist_cpu_ratio,omitempty"` // over pushd
	BlacklistPeakRSS    float64 `json:"pushd_blacklist_peak_rss_bytes,omitempty"`
	BlacklistReady      float64 `json:"pushd_blacklist_ready_seconds,omitempty"`
}

// machine describes where the benchmark ran.
type machine struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	GoVersion string `json:"go_version"`
}

func thisMachine() machine {
	m := machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func (m machine) String() string {
	s := fmt.Sprintf("%s/%s, %d CPUs", m.OS, m.Arch, m.CPUs)
	if m.CPUModel != "" {
		s += ", " + m.CPUModel
	}
	if m.Kernel != "" {
		s += ", kernel " + m.Kernel
	}
	return s + ", " + m.GoVersion
}

// report is everything pushbench prints.
type report struct {
	Command  string    `json:"command"`
	Settings string    `json:"settings"`
	N        int       `json:"n"`
	Machine  machine   `json:"machine"`
	Started  time.Time `json:"started"`
	ClockTck int64     `json:"clock_ticks_per_second"`
	PushdEnv []string  `json:"pushd_env,omitempty"`
	// PushdTags are the build tags of the pushd binary measured.
	PushdTags string `json:"pushd_tags"`
	// Blacklist is the size of pushd+blacklist's blacklist (-blacklist),
	// of which BlacklistUsers are user ids, the rest tokens;
	// BlacklistImport is the time its import into the store took.
	Blacklist       int           `json:"blacklist_entries,omitempty"`
	BlacklistUsers  int           `json:"blacklist_user_entries,omitempty"`
	BlacklistImport time.Duration `json:"blacklist_import_ns,omitempty"`
	Rounds          []roundResult `json:"rounds"`
	Median          summary       `json:"median"`
	// BarMet says whether the median ratio reached the bar; absent when
	// no round has both contenders.
	BarMet *bool `json:"bar_met,omitempty"`
	// BlacklistBarMet says whether the median pushd+blacklist/pushd ratio
	// reached blacklistBar; absent when no round has both.
	BlacklistBarMet *bool `json:"blacklist_bar_met,omitempty"`
}

// summarize computes the medians and the verdict.
func (r *report) summarize() {
	col := func(f func(roundResult) float64) float64 {
		var v []float64
		for _, rr := range r.Rounds {
			if x := f(rr); x > 0 {
				v = append(v, x)
			}
		}
		return median(v)
	}
	bareCol := func(f func(*sample) float64) func(roundResult) float64 {
		return func(rr roundResult) float64 {
			if rr.Bare == nil {
				return 0
			}
			return f(rr.Bare)
		}
	}
	pushdCol := func(f func(*sample) float64) func(roundResult) float64 {
		return func(rr roundResult) float64 {
			if rr.Pushd == nil {
				return 0
			}
			return f(rr.Pushd)
		}
	}
	blacklistCol := func(f func(*sample) float64) func(roundResult) float64 {
		return func(rr roundResult) float64 {
			if rr.Blacklist == nil {
				return 0
			}
			return f(rr.Blacklist)
		}
	}
	perSecond := func(s *sample) float64 { return s.PerSecond }
	cpu := func(s *sample) float64 { return s.CPUPer100k }
	rss := func(s *sample) float64 { return float64(s.PeakRSS) }
	ready := func(s *sample) float64 { return s.Ready.Seconds() }
	r.Median = summary{
		BarePerSecond:   col(bareCol(perSecond)),
		PushdPerSecond:  col(pushdCol(perSecond)),
		Ratio:           col(roundResult.ratio),
		BareCPUPer100k:  col(bareCol(cpu)),
		PushdCPUPer100k: col(pushdCol(cpu)),
		CPURatio:        col(roundResult.cpuRatio),
		BarePeakRSS:     col(bareCol(rss)),
		PushdPeakRSS:    col(pushdCol(rss)),
		PushdReady:      col(pushdCol(ready)),

		BlacklistPerSecond:  col(blacklistCol(perSecond)),
		BlacklistRatio:      col(roundResult.blacklistRatio),
		BlacklistCPUPer100k: col(blacklistCol(cpu)),
		BlacklistCPURatio:   col(roundResult.blacklistCPURatio),
		BlacklistPeakRSS:    col(blacklistCol(rss)),
		BlacklistReady:      col(blacklistCol(ready)),
	}
	r.BarMet = verdict(r.Median.Ratio, bar)
	r.BlacklistBarMet = verdict(r.Median.BlacklistRatio, blacklistBar)
}

// verdict says whether ratio reached bar; nil when there is no ratio (0).
func verdict(ratio, bar float64) *bool {
	if ratio == 0 {
		return nil
	}
	met := ratio >= bar
	return &met
}

// median returns the median of v (the mean of the middle two for an even
// count), 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}

// printTable writes the results as a table with the command, the machine
// and the verdict.
func (r *report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\ncommand:  %s\n", r.Command)
	fmt.Fprintf(w, "settings: %s\n", r.Settings)
	fmt.Fprintf(w, "machine:  %s\n", r.Machine)
	fmt.Fprintf(w, "date:     %s\n", r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "pushd:    built with -tags %q\n", r.PushdTags)
	if len(r.PushdEnv) > 0 {
		fmt.Fprintf(w, "pushd also got from the environment: %s\n", strings.Join(r.PushdEnv, " "))
	}
	if r.Blacklist > 0 {
		fmt.Fprintf(w, "blacklist of pushd+blacklist: %s\n", r.blacklistLabel())
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\torder\tbare/s\tpushd/s\tpushd/bare\tbare CPU s/100k\tpushd CPU s/100k\tCPU pushd/bare\tbare RSS MB\tpushd RSS MB\t")
	for _, rr := range r.Rounds {
		var bps, pps, bcpu, pcpu, brss, prss float64
		if rr.Bare != nil {
			bps, bcpu, brss = rr.Bare.PerSecond, rr.Bare.CPUPer100k, float64(rr.Bare.PeakRSS)
		}
		if rr.Pushd != nil {
			pps, pcpu, prss = rr.Pushd.PerSecond, rr.Pushd.CPUPer100k, float64(rr.Pushd.PeakRSS)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", rr.Round, strings.Join(rr.Order, ","),
			num(bps, "%.0f"), num(pps, "%.0f"), num(rr.ratio(), "%.3f"),
			num(bcpu, "%.2f"), num(pcpu, "%.2f"), num(rr.cpuRatio(), "%.3f"),
			num(brss/(1<<20), "%.1f"), num(prss/(1<<20), "%.1f"))
	}
	m := r.Median
	fmt.Fprintf(tw, "median\t\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
		num(m.BarePerSecond, "%.0f"), num(m.PushdPerSecond, "%.0f"), num(m.Ratio, "%.3f"),
		num(m.BareCPUPer100k, "%.2f"), num(m.PushdCPUPer100k, "%.2f"), num(m.CPURatio, "%.3f"),
		num(m.BarePeakRSS/(1<<20), "%.1f"), num(m.PushdPeakRSS/(1<<20), "%.1f"))
	_ = tw.Flush()
	if r.hasBlacklist() {
		r.printBlacklistTable(w)
	}

	fmt.Fprintf(w, "\nRates: pushes the simulator accepted per second between t0 (first poll of its stats seeing a push\n"+
		"accepted) and t1 (first poll seeing all %s). CPU: each contender process's user+system time between\n"+
		"the same two polls, from /proc/<pid>/stat (1/%d s ticks), scaled to 100,000 pushes. RSS: peak (VmHWM).\n", r.nLabel(), r.ClockTck)
	if r.hasBlacklist() {
		fmt.Fprintf(w, "Ready: from the start of pushd's process to the first 200 from its /readyz (lists loaded, consuming).\n")
	}
	for _, rr := range r.Rounds {
		for _, s := range []*sample{rr.Bare, rr.Pushd, rr.Blacklist} {
			if s == nil {
				continue
			}
			for _, n := range s.Notes {
				fmt.Fprintf(w, "round %d: NOTE: %s\n", rr.Round, n)
			}
		}
	}
	switch {
	case r.BarMet == nil:
		fmt.Fprintf(w, "bar (pushd >= %.1f x bare notifications/s): not judged, no round ran both contenders\n", bar)
	case *r.BarMet:
		fmt.Fprintf(w, "bar (pushd >= %.1f x bare notifications/s): MET, median ratio %.3f\n", bar, r.Median.Ratio)
	default:
		fmt.Fprintf(w, "bar (pushd >= %.1f x bare notifications/s): NOT MET, median ratio %.3f\n", bar, r.Median.Ratio)
	}
	if r.Blacklist > 0 {
		what := fmt.Sprintf("blacklist bar (pushd+blacklist >= %.2f x pushd notifications/s, %d entries)", blacklistBar, r.Blacklist)
		switch {
		case r.BlacklistBarMet == nil:
			fmt.Fprintf(w, "%s: not judged, no round ran both pushd and pushd+blacklist\n", what)
		case *r.BlacklistBarMet:
			fmt.Fprintf(w, "%s: MET, median ratio %.3f\n", what, r.Median.BlacklistRatio)
		default:
			fmt.Fprintf(w, "%s: NOT MET, median ratio %.3f\n", what, r.Median.BlacklistRatio)
		}
	}
}

// hasBlacklist reports whether a round has a pushd+blacklist sample.
func (r *report) hasBlacklist() bool {
	return slices.ContainsFunc(r.Rounds, func(rr roundResult) bool { return rr.Blacklist != nil })
}

// printBlacklistTable writes pushd+blacklist's results next to pushd's.
func (r *report) printBlacklistTable(w io.Writer) {
	fmt.Fprintf(w, "\npushd+blacklist: pushd with %d blacklist entries loaded\n", r.Blacklist)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tpushd/s\tpushd+blacklist/s\tblacklist/pushd\tpushd CPU s/100k\tpushd+blacklist CPU s/100k\tCPU blacklist/pushd\tpushd RSS MB\tpushd+blacklist RSS MB\tpushd ready s\tpushd+blacklist ready s\t")
	for _, rr := range r.Rounds {
		var pps, lps, pcpu, lcpu, prss, lrss, prdy, lrdy float64
		if rr.Pushd != nil {
			pps, pcpu, prss, prdy = rr.Pushd.PerSecond, rr.Pushd.CPUPer100k, float64(rr.Pushd.PeakRSS), rr.Pushd.Ready.Seconds()
		}
		if rr.Blacklist != nil {
			lps, lcpu, lrss, lrdy = rr.Blacklist.PerSecond, rr.Blacklist.CPUPer100k, float64(rr.Blacklist.PeakRSS), rr.Blacklist.Ready.Seconds()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", rr.Round,
			num(pps, "%.0f"), num(lps, "%.0f"), num(rr.blacklistRatio(), "%.3f"),
			num(pcpu, "%.2f"), num(lcpu, "%.2f"), num(rr.blacklistCPURatio(), "%.3f"),
			num(prss/(1<<20), "%.1f"), num(lrss/(1<<20), "%.1f"),
			num(prdy, "%.2f"), num(lrdy, "%.2f"))
	}
	m := r.Median
	fmt.Fprintf(tw, "median\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
		num(m.PushdPerSecond, "%.0f"), num(m.BlacklistPerSecond, "%.0f"), num(m.BlacklistRatio, "%.3f"),
		num(m.PushdCPUPer100k, "%.2f"), num(m.BlacklistCPUPer100k, "%.2f"), num(m.BlacklistCPURatio, "%.3f"),
		num(m.PushdPeakRSS/(1<<20), "%.1f"), num(m.BlacklistPeakRSS/(1<<20), "%.1f"),
		num(m.PushdReady, "%.2f"), num(m.BlacklistReady, "%.2f"))
	_ = tw.Flush()
}

// blacklistLabel describes the blacklist and its import.
func (r *report) blacklistLabel() string {
	s := fmt.Sprintf("%d random entries (%d user ids, %d tokens), none a recipient's", r.Blacklist, r.BlacklistUsers, r.Blacklist-r.BlacklistUsers)
	if r.BlacklistImport > 0 {
		s += fmt.Sprintf("; imported into the store in %v (one ImportList call)", r.BlacklistImport.Round(time.Millisecond))
	}
	return s
}

// nLabel is n for the legend.
func (r *report) nLabel() string {
	if r.N == 0 {
		return "n"
	}
	return strconv.Itoa(r.N)
}

// num formats v, or "-" for 0 (missing).
func num(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// printJSON writes the report as indented JSON.
func (r *report) printJSON(w io.Writer) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil { // only plain types: cannot happen
		fmt.Fprintln(w, "pushbench: json:", err)
		return
	}
	fmt.Fprintf(w, "%s\n", b)
}

// redactValue hides the password of a URL value.
func redactValue(v string) string {
	if u, err := url.Parse(v); err == nil && u.User != nil {
		return u.Redacted()
	}
	return v
}
