package main

import (
	"context"
	"crypto/x509"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pushd/pushd/cmd/internal/buildtag"
	"github.com/pushd/pushd/push/sim"
)

// Contender names, as -only takes them.
const (
	bare           = "bare"
	pushd          = "pushd"
	pushdBlacklist = "pushd+blacklist"
)

// config is the parsed command line.
type config struct {
	n, rounds, concurrency int
	pushd, pushsim         string
	amqpURL                string
	latency, timeout       time.Duration
	only                   string
	blacklist              int
	audience               int
	// android is the share of Android (FCM) recipients, in percent; the
	// rest are iOS.
	android int
	// high is how many single-recipient high-lane batches the pushd
	// contenders also get while they drain (0: none).
	high int
	json bool
	// storeDSN is pushd's store; "" for a SQLite file in each run's
	// directory.
	storeDSN string
	// profile is the directory for the contenders' CPU profiles ("" for
	// none); profileFor is how long pushd's is.
	profile    string
	profileFor time.Duration
}

// contenders returns the contenders of every round, in the order of the
// first round.
func (c *config) contenders() []string {
	switch {
	case c.only != "":
		return []string{c.only}
	case c.blacklist > 0:
		return []string{bare, pushd, pushdBlacklist}
	default:
		return []string{bare, pushd}
	}
}

// buildTags returns the -tags setting the Go binary at path was built with.
func buildTags(path string) (string, error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" {
			return s.Value, nil
		}
	}
	return "", nil
}

// parseFlags reads args; -amqp-url defaults to $PUSHD_AMQP_URL when set.
func parseFlags(args []string, getenv func(string) string, stdout io.Writer) (*config, error) {
	var c config
	fs := flag.NewFlagSet("pushbench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	defURL := getenv("PUSHD_AMQP_URL")
	if defURL == "" {
		defURL = "amqp://guest:guest@127.0.0.1:5672/"
	}
	fs.IntVar(&c.n, "n", 100000, "notifications per contender and round (iOS, or as -android splits them)")
	fs.IntVar(&c.rounds, "rounds", 3, "rounds; each runs every contender, in rotating order")
	fs.IntVar(&c.concurrency, "concurrency", 256, "goroutines of the bare client (pushd's default apns.workers is 256)")
	fs.StringVar(&c.pushd, "pushd", "./bin/pushd", "pushd `binary` (scripts/build.sh)")
	fs.StringVar(&c.pushsim, "pushsim", "./bin/pushsim", "pushsim `binary`")
	fs.StringVar(&c.amqpURL, "amqp-url", defURL, "RabbitMQ `URL` ($PUSHD_AMQP_URL when set)")
	fs.DurationVar(&c.latency, "latency", 0, "latency the simulator adds to every answer")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "time limit of one contender's run in one round")
	fs.StringVar(&c.only, "only", "", "run only one contender: bare, pushd or pushd+blacklist")
	fs.IntVar(&c.blacklist, "blacklist", 0, "also run pushd+blacklist: pushd with a blacklist of `N` random entries loaded")
	fs.IntVar(&c.audience, "audience", 0, "instead of the rounds, import an audience of `N` generated recipients through pushd's admin API and report the time and pushd's RSS")
	fs.IntVar(&c.android, "android", 0, "`percent` of the notifications that go to Android (FCM; the rest to iOS): 100 for FCM only, 70 for the Korean market's mix. pushd's FCM limit is lifted for the measurement; the bare contender runs a firebase client beside apns2")
	fs.IntVar(&c.high, "high", 0, "also publish `N` single-recipient high-lane batches while each pushd contender drains (from a quarter of the way on, one every 10 ms) and report their enqueue-to-first-send latency from pushd's histogram")
	fs.BoolVar(&c.json, "json", false, "also print the results as JSON")
	fs.StringVar(&c.profile, "profile", "", "write CPU profiles of the contenders into `DIR`: the bare client's over its pushes, pushd's (through its /debug/pprof) for -profile-for from a tenth of the way on")
	fs.DurationVar(&c.profileFor, "profile-for", 10*time.Second, "length of pushd's CPU profile with -profile (whole seconds)")
	fs.StringVar(&c.storeDSN, "store-dsn", "", "pushd's store.dsn, e.g. a postgres:// `URL` (default: a SQLite file in each run's directory)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.n < 1:
		return nil, fmt.Errorf("-n %d: must be at least 1", c.n)
	case c.rounds < 1:
		return nil, fmt.Errorf("-rounds %d: must be at least 1", c.rounds)
	case c.concurrency < 1:
		return nil, fmt.Errorf("-concurrency %d: must be at least 1", c.concurrency)
	case c.latency < 0:
		return nil, fmt.Errorf("-latency %v: must be 0 or more", c.latency)
	case c.timeout <= 0:
		return nil, fmt.Errorf("-timeout %v: must be positive", c.timeout)
	case c.only != "" && c.only != bare && c.only != pushd && c.only != pushdBlacklist:
		return nil, fmt.Errorf("-only %q: want bare, pushd or pushd+blacklist", c.only)
	case c.android < 0 || c.android > 100:
		return nil, fmt.Errorf("-android %d: a percentage, 0 to 100", c.android)
	case c.high < 0:
		return nil, fmt.Errorf("-high %d: must be 0 or more", c.high)
	case c.profileFor < time.Second:
		return nil, fmt.Errorf("-profile-for %v: must be 1s or more", c.profileFor)
	case c.high > 0 && c.only == bare:
		return nil, errors.New("-high is for the pushd contenders; -only bare runs none")
	case c.audience < 0:
		return nil, fmt.Errorf("-audience %d: must be 0 or more", c.audience)
	case c.audience > 0 && (c.only != "" || c.blacklist > 0):
		return nil, errors.New("-audience runs no rounds: -only and -blacklist do not apply")
	case c.blacklist < 0:
		return nil, fmt.Errorf("-blacklist %d: must be 0 or more", c.blacklist)
	case c.only == pushdBlacklist && c.blacklist == 0:
		return nil, errors.New("-only pushd+blacklist: set the blacklist's size with -blacklist N")
	case c.blacklist > 0 && c.only != "" && c.only != pushdBlacklist:
		return nil, fmt.Errorf("-blacklist %d with -only %s: the blacklist is only for pushd+blacklist", c.blacklist, c.only)
	case c.blacklist > 0 && c.storeDSN != "":
		return nil, errors.New("-blacklist with -store-dsn: the blacklist is loaded into a SQLite store of the run's own")
	}
	return &c, nil
}

// bench is one run of pushbench: the configuration and the simulator shared
// by every round.
type bench struct {
	cfg   *config
	dir   string
	sim   *simulator
	roots *x509.CertPool
	poll  *poller
	tck   int64           // clock ticks per second of /proc/<pid>/stat
	bl    *blacklistStore // pushd+blacklist's store; nil without -blacklist
}

// run parses args, starts the simulator, runs the rounds and prints the
// report to stdout. It fails when a contender fails, not when pushd misses
// the bar.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) (err error) {
	if getenv("PUSHBENCH_ROLE") == bareRole {
		return runBareChild(ctx, args)
	}
	cfg, err := parseFlags(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, bin := range []struct{ flag, path string }{{"-pushsim", cfg.pushsim}, {"-pushd", cfg.pushd}} {
		if bin.flag == "-pushd" && cfg.only == bare && cfg.audience == 0 {
			continue
		}
		if _, err := os.Stat(bin.path); err != nil {
			return fmt.Errorf("%s: %w (build the binaries with: scripts/build.sh)", bin.flag, err)
		}
	}

	if cfg.profile != "" {
		if err := os.MkdirAll(cfg.profile, 0o755); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "pushbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := startSimulator(ctx, cfg.pushsim, dir, cfg.latency)
	if err != nil {
		return err
	}
	defer func() {
		if serr := s.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
	}()
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		return fmt.Errorf("simulator CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("simulator CA: no certificate in %s", s.caFile)
	}
	b := &bench{cfg: cfg, dir: dir, sim: s, roots: roots, poll: newPoller(s.url, roots), tck: clockTicks()}
	defer b.poll.close()

	if cfg.audience > 0 {
		res, err := b.runAudience(ctx, cfg.audience, stdout)
		if err != nil {
			return fmt.Errorf("audience: %w", err)
		}
		fmt.Fprintf(stdout, "audience: %s\n", res)
		if cfg.json {
			out, _ := json.Marshal(res)
			fmt.Fprintf(stdout, "%s\n", out)
		}
		return nil
	}

	tags, err := buildTags(cfg.pushd)
	switch {
	case cfg.only == bare:
	case err != nil:
		// A wrapper script, say, that sets pushd's environment.
		tags = "unknown: " + err.Error()
		fmt.Fprintf(stdout, "pushbench: WARNING: %s is not a Go binary whose build tags can be read (%v)\n", cfg.pushd, err)
	case !slices.Contains(strings.Split(tags, ","), buildtag.Shipped):
		fmt.Fprintf(stdout, "pushbench: WARNING: %s was built without -tags %s, as pushd is not shipped: expect about 9 MB more RSS (build with scripts/build.sh)\n", cfg.pushd, buildtag.Shipped)
	}
	rep := &report{
		PushdTags: tags,
		Command:   "pushbench " + shellJoin(args),
		Settings:  settings(cfg),
		N:         cfg.n,
		Machine:   thisMachine(),
		Started:   time.Now().UTC(),
		ClockTck:  b.tck,
		PushdEnv:  inheritedPushdEnv(os.Environ()),
		Blacklist: cfg.blacklist,
	}
	fmt.Fprintf(stdout, "pushbench: %d rounds of %d notifications (%d%% Android) per contender; simulator %s (latency %v)\n", cfg.rounds, cfg.n, cfg.android, s.url, cfg.latency)
	if cfg.blacklist > 0 {
		fmt.Fprintf(stdout, "blacklist: importing %d random entries ...\n", cfg.blacklist)
		b.bl, err = makeBlacklistStore(ctx, filepath.Join(dir, "blacklist", pushdStoreFile), cfg.blacklist)
		if err != nil {
			return fmt.Errorf("blacklist: %w", err)
		}
		rep.BlacklistUsers, rep.BlacklistImport = b.bl.users, b.bl.took
		fmt.Fprintf(stdout, "blacklist: %s\n", rep.blacklistLabel())
	}
	defer func() {
		// Whatever happened, show what was measured.
		rep.summarize()
		rep.printTable(stdout)
		if cfg.json {
			rep.printJSON(stdout)
		}
	}()
	for i := 1; i <= cfg.rounds; i++ {
		r := roundResult{Round: i, Order: order(i, cfg.contenders())}
		for _, who := range r.Order {
			fmt.Fprintf(stdout, "round %d: %s ...\n", i, who)
			var (
				smp *sample
				err error
			)
			switch who {
			case bare:
				smp, err = b.runBare(ctx, i)
				r.Bare = smp
			case pushd:
				smp, err = b.runPushd(ctx, i, nil)
				r.Pushd = smp
			default:
				smp, err = b.runPushd(ctx, i, b.bl)
				r.Blacklist = smp
			}
			if err != nil {
				rep.Rounds = append(rep.Rounds, r)
				return fmt.Errorf("round %d, %s: %w", i, who, err)
			}
			fmt.Fprintf(stdout, "round %d: %s %s\n", i, who, smp)
		}
		rep.Rounds = append(rep.Rounds, r)
	}
	return nil
}

// order returns the contenders of round i (from 1): contenders rotated by
// i-1, so that each runs first, second... in turn and warm-up favours
// none. With two, they alternate.
func order(i int, contenders []string) []string {
	k := (i - 1) % len(contenders)
	return append(slices.Clone(contenders[k:]), contenders[:k]...)
}

// runBare is the bare contender: pushbench itself, started again in the
// bare client's role, pushing n notifications to random tokens.
func (b *bench) runBare(ctx context.Context, round int) (*sample, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	base, err := b.poll.stats(ctx)
	if err != nil {
		return nil, err
	}
	c, err := startChild("bare client", exe, []string{
		"-sim", b.sim.url,
		"-ca", b.sim.caFile,
		"-n", strconv.Itoa(b.cfg.n),
		"-concurrency", strconv.Itoa(b.cfg.concurrency),
		"-android", strconv.Itoa(b.cfg.android),
		"-cpuprofile", b.profileFile(bare, round),
	}, []string{"PUSHBENCH_ROLE=" + bareRole}, nil)
	if err != nil {
		return nil, err
	}
	return b.drain(ctx, c, base)
}

// profileFile is where contender who's CPU profile of round goes, "" without
// -profile.
func (b *bench) profileFile(who string, round int) string {
	if b.cfg.profile == "" {
		return ""
	}
	return filepath.Join(b.cfg.profile, fmt.Sprintf("%s-round%d.pprof", who, round))
}

// drain times child c (the bare client or pushd) while the simulator
// accepts n pushes more than base counted, then stops it with SIGTERM,
// which must make it exit 0. It checks that the simulator received no
// more requests than n: any refusal or duplicate is noted.
func (b *bench) drain(ctx context.Context, c *child, base sim.Stats) (s *sample, err error) {
	return b.drainN(ctx, c, base, int64(b.cfg.n), nil)
}

// drainN is drain for want pushes; beforeStop, when not nil, runs once
// they are accepted, before the child is stopped, and may add to the
// sample.
func (b *bench) drainN(ctx context.Context, c *child, base sim.Stats, want int64, beforeStop func(*sample) error) (s *sample, err error) {
	stopped := false
	defer func() {
		if !stopped {
			err = errors.Join(err, c.stop())
		}
	}()
	mctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	mctx, cancelTimeout := context.WithTimeoutCause(mctx, b.cfg.timeout, fmt.Errorf("%s did not get %d notifications accepted within -timeout %v", c.name, want, b.cfg.timeout))
	defer cancelTimeout()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-c.exited:
			cancel(fmt.Errorf("%s exited before the end", c.name))
		case <-mctx.Done():
		}
	}()
	w, err := b.poll.measure(mctx, both(base), want, procCPU(c.pid(), b.tck))
	cancel(nil)
	<-watchDone
	if err != nil {
		return nil, err
	}
	rss, err := peakRSS(c.pid())
	if err != nil {
		return nil, fmt.Errorf("%s peak RSS: %w", c.name, err)
	}
	s = newSample(w)
	if beforeStop != nil {
		if err := beforeStop(s); err != nil {
			return nil, err
		}
	}
	stopped = true
	if err := c.stop(); err != nil {
		return nil, fmt.Errorf("%s did not exit 0 on SIGTERM: %w", c.name, err)
	}
	s.PeakRSS = rss
	after, err := b.poll.stats(ctx)
	if err != nil {
		return nil, err
	}
	if got := both(after).Requests - both(base).Requests; got != want {
		s.Notes = append(s.Notes, fmt.Sprintf("the simulator received %d requests for %d notifications", got, want))
	}
	return s, nil
}

// sample is one contender's result in one round.
type sample struct {
	// PerSecond is the rate of accepted pushes between t0 and t1.
	PerSecond float64 `json:"per_second"`
	// CPUPer100k is the contender's CPU time between t0 and t1, in
	// seconds, scaled to 100,000 pushes.
	CPUPer100k float64 `json:"cpu_seconds_per_100k"`
	// Elapsed is t1-t0 and Pushes what was accepted in between.
	Elapsed time.Duration `json:"elapsed_ns"`
	Pushes  int64         `json:"pushes"`
	// CPU is the contender's CPU time between t0 and t1.
	CPU time.Duration `json:"cpu_ns"`
	// PeakRSS is the contender's VmHWM, in bytes.
	PeakRSS int64 `json:"peak_rss_bytes"`
	// Ready is pushd's start-up time: from the start of its process to
	// the first 200 from its /readyz (0 for the bare client).
	Ready time.Duration `json:"ready_ns,omitempty"`
	// High is the high-lane batches' enqueue-to-first-send latency (with
	// -high), from pushd's histogram.
	High  *highLatency `json:"high_lane,omitempty"`
	Notes []string     `json:"notes,omitempty"`
}

// newSample turns a measured window into a sample.
func newSample(w window) *sample {
	s := &sample{
		PerSecond: w.rate(),
		Elapsed:   w.elapsed(),
		Pushes:    w.pushes(),
		CPU:       w.cpu(),
	}
	if s.Pushes > 0 {
		s.CPUPer100k = s.CPU.Seconds() * 100000 / float64(s.Pushes)
	}
	return s
}

func (s *sample) String() string {
	msg := fmt.Sprintf("%.0f/s (%d pushes in %v), %.2f CPU s per 100k", s.PerSecond, s.Pushes, s.Elapsed.Round(time.Millisecond), s.CPUPer100k)
	if s.PeakRSS > 0 {
		msg += fmt.Sprintf(", peak RSS %.1f MB", float64(s.PeakRSS)/(1<<20))
	}
	if s.Ready > 0 {
		msg += fmt.Sprintf(", ready %v after start", s.Ready.Round(time.Millisecond))
	}
	if s.High != nil {
		msg += ", high lane: " + s.High.String()
	}
	for _, n := range s.Notes {
		msg += "; NOTE: " + n
	}
	return msg
}

// settings lists every flag's effective value, for the report: enough to
// run the same benchmark again.
func settings(c *config) string {
	u := redactValue(c.amqpURL)
	s := fmt.Sprintf("-n %d -rounds %d -concurrency %d -latency %v -timeout %v -pushd %s -pushsim %s -amqp-url %s",
		c.n, c.rounds, c.concurrency, c.latency, c.timeout, c.pushd, c.pushsim, u)
	if c.only != "" {
		s += " -only " + c.only
	}
	if c.blacklist > 0 {
		s += " -blacklist " + strconv.Itoa(c.blacklist)
	}
	if c.storeDSN != "" {
		s += " -store-dsn " + redactValue(c.storeDSN)
	}
	if c.high > 0 {
		s += " -high " + strconv.Itoa(c.high)
	}
	if c.android > 0 {
		s += " -android " + strconv.Itoa(c.android)
	}
	return s
}

// shellJoin quotes args for a shell where needed.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
		}) {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// inheritedPushdEnv returns the PUSHD_* variables of environ that reach
// pushd as they are (pushbench sets the others).
func inheritedPushdEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PUSHD_") && !slices.Contains(pushdSetKeys, k) {
			out = append(out, k+"="+redactValue(v))
		}
	}
	slices.Sort(out)
	return out
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }
