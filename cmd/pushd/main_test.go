package main

// End-to-end tests: pushd (in-process through run, or as a built binary when
// signals matter) against the real RabbitMQ and the simulator speaking APNs
// and FCM over TLS. RabbitMQ must be running (scripts/services.sh).
//
// Each test has a topology, a simulator and listening addresses of its own,
// so the tests run in parallel (t.Parallel). The exceptions are named
// TestFault... and do not call t.Parallel: they disturb what other tests
// share (RabbitMQ stopped or restarted, connections they do not own
// closed, a port given up and taken again), so scripts/test.sh skips them
// in its first step and runs them alone in a second one (-run '^TestFault').

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/cmd/internal/buildtag"
	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/queue"
	"github.com/pushd/pushd/queue/queuetest"
	"github.com/pushd/pushd/store"
	"github.com/pushd/pushd/store/pgtest"
)

// binary is the pushd executable built by TestMain for the tests that send
// it signals, with the race detector when the tests have it.
var binary string

// plainBinary is pushd built without the race detector, for the test that
// fills the store's tmpfs: SQLite's WAL index is a file mapped in memory,
// and under the race detector an atomic access to it that faults on the
// full tmpfs happens inside the race runtime and crashes the process
// (about 1 run in 4; never in 12 runs without it). See docs/semantics.md.
var plainBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pushd-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pushd")
	args := []string{"build", "-tags", buildtag.Shipped, "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building pushd: %v\n%s", err, out)
		os.Exit(1)
	}
	plainBinary = binary
	if raceEnabled {
		plainBinary = filepath.Join(dir, "pushd-norace")
		if out, err := exec.Command("go", "build", "-tags", buildtag.Shipped, "-o", plainBinary, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building pushd without -race: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// harness is one test's world: a topology of its own on the real broker, a
// simulator, and the environment that points pushd at both.
type harness struct {
	t   *testing.T
	url string
	top queue.Topology
	sim *sim.Server
	env map[string]string
	ch  *amqp.Channel

	tokens map[synthKey][]string // recipients' tokens by campaign, see tokensOf
}

func newHarness(t *testing.T, sc sim.Config) *harness {
	t.Helper()
	url := queuetest.URL(t)
	top := queuetest.Topology(t, url)
	sc.TrackTokens = true
	s, err := sim.New(sc, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	ca := filepath.Join(t.TempDir(), "sim-ca.pem")
	if err := os.WriteFile(ca, s.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, url: url, top: top, sim: s, ch: queuetest.Conn(t, url), tokens: map[synthKey][]string{}}
	h.env = map[string]string{
		"PUSHD_AMQP_URL":              url,
		"PUSHD_AMQP_EXCHANGE":         top.Exchange,
		"PUSHD_AMQP_QUEUE":            top.Queue,
		"PUSHD_AMQP_HIGH_QUEUE":       top.HighQueue,
		"PUSHD_AMQP_DEAD_EXCHANGE":    top.DeadExchange,
		"PUSHD_AMQP_DEAD_QUEUE":       top.DeadQueue,
		"PUSHD_AMQP_EVENTS_EXCHANGE":  top.EventsExchange,
		"PUSHD_AMQP_RECONNECT_MIN":    "100ms",
		"PUSHD_AMQP_RECONNECT_MAX":    "1s",
		"PUSHD_APNS_HOST":             s.URL(),
		"PUSHD_APNS_CA_FILE":          ca,
		"PUSHD_FCM_ENDPOINT":          s.URL() + "/v1",
		"PUSHD_FCM_CA_FILE":           ca,
		"PUSHD_FCM_PROJECT_ID":        "pushd-test",
		"PUSHD_LOG_FORMAT":            "text",
		"PUSHD_STORE_DSN":             testStoreDSN(t),
		"PUSHD_DISPATCHER_RETRY_BASE": "100ms",
	}
	return h
}

// testStoreDSN is the store of a test's pushd: a SQLite file in a
// temporary directory, or with PUSHD_TEST_STORE=postgres a fresh
// PostgreSQL database (pgtest), so that the end-to-end tests can run on
// either backend.
func testStoreDSN(t *testing.T) string {
	switch b := os.Getenv("PUSHD_TEST_STORE"); b {
	case "", "sqlite":
		return filepath.Join(t.TempDir(), "pushd.db")
	case "postgres":
		return pgtest.FreshDB(t)
	default:
		t.Fatalf("PUSHD_TEST_STORE=%q: want sqlite or postgres", b)
		return ""
	}
}

// daemon is a running pushd.
type daemon struct {
	metrics string
	admin   string
	log     *testWriter
	stop    func() error // graceful stop; returns run's error or the exit status
	cmd     *exec.Cmd
}

// start runs pushd in-process with the harness environment plus extra.
func (h *harness) start(extra map[string]string) *daemon {
	h.t.Helper()
	env := h.daemonEnv(extra)
	ctx, cancel := context.WithCancel(context.Background())
	w := &testWriter{t: h.t, prefix: "pushd: "}
	exited := make(chan struct{})
	var err error
	go func() {
		defer close(exited)
		err = run(ctx, nil, func(k string) string { return env[k] }, w)
	}()
	d := &daemon{log: w}
	d.stop = sync.OnceValue(func() error {
		cancel()
		select {
		case <-exited:
			return err
		case <-time.After(60 * time.Second):
			return fmt.Errorf("pushd did not stop within 60s")
		}
	})
	h.t.Cleanup(func() { _ = d.stop() })
	h.waitStarted(d, exited, func() error { return err })
	return d
}

// spawn runs the pushd binary with the harness environment plus extra,
// and args.
func (h *harness) spawn(extra map[string]string, args ...string) *daemon {
	h.t.Helper()
	return h.spawnBinary(binary, extra, args...)
}

// spawnBinary is spawn with the pushd executable bin.
func (h *harness) spawnBinary(bin string, extra map[string]string, args ...string) *daemon {
	h.t.Helper()
	env := h.daemonEnv(extra)
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	w := &testWriter{t: h.t, prefix: "pushd[bin]: "}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	exited := make(chan struct{})
	var err error
	go func() {
		defer close(exited)
		err = cmd.Wait()
	}()
	d := &daemon{log: w, cmd: cmd}
	d.stop = sync.OnceValue(func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return err
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("pushd did not exit within 60s of SIGTERM")
		}
	})
	h.t.Cleanup(func() { _ = d.stop() })
	h.waitStarted(d, exited, func() error { return err })
	return d
}

// daemonEnv is the environment of a daemon: the harness's, with the
// metrics and admin servers on ports the kernel picks (see waitStarted),
// then extra.
func (h *harness) daemonEnv(extra map[string]string) map[string]string {
	env := map[string]string{"PUSHD_METRICS_ADDR": "127.0.0.1:0", "PUSHD_ADMIN_ADDR": "127.0.0.1:0"}
	for k, v := range h.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// startedLine is the log line where pushd says where it listens.
var startedLine = regexp.MustCompile(`"pushd starting".*metrics_addr"?[=:]"?([^\s"]+).*admin_addr"?[=:]"?([^\s"]+)`)

// waitStarted waits until d has logged its addresses, then until it is
// ready. It fails the test if pushd exits first.
func (h *harness) waitStarted(d *daemon, exited <-chan struct{}, exitErr func() error) {
	h.t.Helper()
	var addrs []string
	testwait.For(h.t, 30*time.Second, "pushd to log its addresses", func() bool {
		if addrs = d.log.match(startedLine); addrs != nil {
			return true
		}
		select {
		case <-exited:
			h.t.Fatalf("pushd exited while starting: %v", exitErr())
		default:
		}
		return false
	})
	d.metrics, d.admin = addrs[1], addrs[2]
	testwait.For(h.t, 30*time.Second, "pushd ready", func() bool {
		select {
		case <-exited:
			h.t.Fatalf("pushd exited while starting: %v", exitErr())
		default:
		}
		return ready(d)
	})
}

// publish publishes a synthetic campaign and returns its options.
func (h *harness) publish(o synth.Options, lane dispatcher.Lane) synth.Options {
	h.t.Helper()
	queuetest.DeleteAtEnd(h.t, h.url, h.top.CampaignQueue(o.Campaign))
	p, err := queue.DialProducer(h.url, h.top)
	if err != nil {
		h.t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	for b := range o.Batches() {
		body, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := p.Publish(ctx, lane, b.BatchID, body); err != nil {
			h.t.Fatal(err)
		}
	}
	if err := p.Wait(ctx); err != nil {
		h.t.Fatal(err)
	}
	return o
}

// synthKey names the recipients of a synthetic campaign.
type synthKey struct {
	campaign        string
	recipients, ios int
}

// tokensOf returns the device tokens of o's recipients, computed once per
// campaign: the conditions the tests poll look them up often.
func (h *harness) tokensOf(o synth.Options) []string {
	k := synthKey{o.Campaign, o.Recipients, o.IOSPercent}
	toks, ok := h.tokens[k]
	if !ok {
		toks = make([]string, o.Recipients)
		for i := range toks {
			toks[i] = o.Recipient(i).Token
		}
		h.tokens[k] = toks
	}
	return toks
}

// delivered checks that the simulator accepted every recipient of o: exactly
// once when exact, at least once otherwise. It returns the duplicates.
func (h *harness) delivered(o synth.Options, exact bool) (duplicates int) {
	h.t.Helper()
	tokens := h.sim.Tokens()
	missing := 0
	for _, tok := range h.tokensOf(o) {
		n := tokens[tok]
		switch {
		case n == 0:
			missing++
		case n > 1:
			duplicates += n - 1
		}
	}
	if missing > 0 {
		h.t.Errorf("%d of %d recipients never delivered", missing, o.Recipients)
	}
	if exact && duplicates > 0 {
		h.t.Errorf("%d duplicate deliveries", duplicates)
	}
	return duplicates
}

// lanesEmpty checks that nothing is left in the lane queues. Call it after
// pushd stopped: a delivery left unacked is back in the queue by then.
func (h *harness) lanesEmpty() {
	h.t.Helper()
	for _, q := range []string{h.top.Queue, h.top.HighQueue} {
		if n := queuetest.Ready(h.t, h.ch, q); n != 0 {
			h.t.Errorf("queue %s holds %d messages", q, n)
		}
	}
}

// countersAddUp checks the identity of docs/semantics.md ("Counters")
// for every campaign of the harness's store: received = sent + failed +
// filtered + dropped + cancelled + pending. Call it once every recipient
// the test published is resolved, pending then being 0. It reads the
// store, where the counters are written with the ledger (what a kill -9
// leaves), waiting up to 30 s for the last writes, and logs each
// campaign's counters.
func (h *harness) countersAddUp() {
	h.t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, h.env["PUSHD_STORE_DSN"], nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer st.Close()
	var recs []dispatcher.CampaignRecord
	var bad []string
	addUp := costly(func() bool {
		if recs, err = st.Campaigns(ctx); err != nil {
			h.t.Fatalf("read the campaigns: %v", err)
		}
		bad = bad[:0]
		for _, r := range recs {
			if n := r.Counters; n.Sent+n.Failed+n.Filtered+n.Dropped+n.Cancelled != n.Received {
				bad = append(bad, fmt.Sprintf("%s %+v", r.ID, n))
			}
		}
		return len(recs) > 0 && len(bad) == 0
	})
	deadline := time.Now().Add(30 * time.Second)
	for !addUp() {
		if time.Now().After(deadline) {
			h.t.Fatalf("campaign counters do not add up (received = sent + failed + filtered + dropped + cancelled) 30s after the test: %s", strings.Join(bad, "; "))
		}
		time.Sleep(testwait.Interval)
	}
	for _, r := range recs {
		h.t.Logf("campaign %s: %+v", r.ID, r.Counters)
	}
}

func (h *harness) waitAccepted(n int, within time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := h.sim.WaitAccepted(ctx, n); err != nil {
		st := h.sim.Stats()
		h.t.Fatalf("simulator accepted %d+%d, want %d: %v", st.APNs.Accepted, st.FCM.Accepted, n, err)
	}
}

// costly returns cond called at most every 50 ms, for a condition that
// costs a request (pushd's API or /metrics) or a connection to the broker:
// testwait.For looks every 5 ms, which would take CPU from the daemons
// under test, and from the other tests running in parallel.
func costly(cond func() bool) func() bool {
	var last time.Time
	return func() bool {
		if !last.IsZero() && time.Since(last) < 50*time.Millisecond {
			return false
		}
		last = time.Now()
		return cond()
	}
}

// accepted returns how many sends s accepted, APNs and FCM together.
func accepted(s *sim.Server) int {
	st := s.Stats()
	return int(st.APNs.Accepted + st.FCM.Accepted)
}

// requests returns how many requests reached s, answered or refused: each
// one took a token from pushd's buckets.
func requests(s *sim.Server) int {
	st := s.Stats()
	return int(st.APNs.Requests + st.FCM.Requests)
}

func TestTenThousandRecipientsEachDeliveredOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{RecordLast: 10})
	d := h.start(nil)
	o := synth.Options{Campaign: "e2e-10k", Recipients: 10000, BatchSize: 500, IOSPercent: 50,
		Notification: dispatcher.Notification{
			Title: "Spring sale", Body: "50% off",
			Data: map[string]json.RawMessage{"deeplink": json.RawMessage(`"app://sale"`), "n": json.RawMessage(`3`)},
		}}
	h.publish(o, dispatcher.Normal)
	h.waitAccepted(10000, 2*time.Minute)

	st := h.sim.Stats()
	if st.APNs.Accepted != 5000 || st.FCM.Accepted != 5000 {
		t.Errorf("accepted %d APNs and %d FCM, want 5000 each", st.APNs.Accepted, st.FCM.Accepted)
	}
	h.delivered(o, true)

	// Custom data reaches the device: top-level APNs keys, FCM message.data.
	for _, r := range h.sim.Recorded(sim.APNs)[:1] {
		var p map[string]any
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		if p["deeplink"] != "app://sale" || p["n"] != 3.0 || p["aps"] == nil {
			t.Errorf("APNs payload %s", r.Body)
		}
	}
	for _, r := range h.sim.Recorded(sim.FCM)[:1] {
		var p struct {
			Message struct {
				Data map[string]string `json:"data"`
			} `json:"message"`
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Message.Data["deeplink"] != "app://sale" || p.Message.Data["n"] != "3" {
			t.Errorf("FCM message.data %v", p.Message.Data)
		}
	}

	// Metrics agree, once pushd has had the last answers (the simulator
	// counts a push before pushd reads its answer).
	var m map[string]float64
	sent := func(provider string) float64 { return m[`pushd_sends_total{provider="`+provider+`",result="sent"}`] }
	testwait.For(t, 10*time.Second, "every send counted in the metrics", costly(func() bool {
		m = scrape(t, d.metrics)
		return sent("apns")+sent("fcm") >= 10000
	}))
	if sent("apns") != 5000 || sent("fcm") != 5000 {
		t.Errorf("send metrics: apns %v fcm %v", sent("apns"), sent("fcm"))
	}
	if m[`pushd_recipients_received_total{lane="normal"}`] != 10000 {
		t.Errorf("received metric %v", m[`pushd_recipients_received_total{lane="normal"}`])
	}
	// Acks happen just after the last send.
	testwait.For(t, 10*time.Second, "in-flight back to 0", costly(func() bool {
		return scrape(t, d.metrics)["pushd_inflight_recipients"] == 0
	}))
	if err := d.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	h.lanesEmpty()
	if n := queuetest.Ready(t, h.ch, h.top.DeadQueue); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	h.countersAddUp()
}

func TestBadMessagesAreDeadLetteredAndDeliveryGoesOn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.start(nil)
	p, err := queue.DialProducer(h.url, h.top)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	bad := map[string][]byte{
		"undecodable":     []byte(`{"schema": "pushd.batch/v1", "batch_id": `),
		"schema-breaking": []byte(`{"schema": "pushd.batch/v1", "batch_id": "b1", "campaign": {"id": "c"}, "notification": {"title": "x"}, "recipients": []}`),
	}
	for id, body := range bad {
		if err := p.PublishRaw(ctx, h.top.RoutingKey, amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	// A malformed token in an otherwise good batch is dropped alone.
	o := synth.Options{Campaign: "after-bad", Recipients: 20, IOSPercent: 50}
	queuetest.DeleteAtEnd(t, h.url, h.top.CampaignQueue(o.Campaign))
	good := o.Batches()
	for b := range good {
		b.Recipients = append(b.Recipients, dispatcher.Recipient{Platform: dispatcher.IOS, Token: "not-a-token"})
		body, _ := json.Marshal(b)
		if err := p.Publish(ctx, dispatcher.Normal, b.BatchID, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	h.waitAccepted(20, time.Minute)
	h.delivered(o, true)

	reasons := map[string]string{}
	for range 2 {
		d := queuetest.Get(t, h.ch, h.top.DeadQueue, 20*time.Second)
		reason, _ := d.Headers[queue.HeaderReason].(string)
		detail, _ := d.Headers[queue.HeaderDetail].(string)
		if reason == "" || detail == "" {
			t.Errorf("dead letter %s without reason: %v", d.MessageId, d.Headers)
		}
		if string(d.Body) != string(bad[d.MessageId]) {
			t.Errorf("dead letter body changed: %q", d.Body)
		}
		reasons[d.MessageId] = reason + ": " + detail
	}
	t.Logf("dead-letter reasons: %v", reasons)
	if !strings.HasPrefix(reasons["undecodable"], "malformed") || !strings.Contains(reasons["schema-breaking"], "recipients") {
		t.Errorf("reasons %v", reasons)
	}
	h.countersAddUp()
}

func TestSIGTERMMidCampaignThenRestartDeliversEveryone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		deadline string
		exact    bool
	}{
		// In-flight batches finish within the deadline: no duplicates.
		{"graceful", "20s", true},
		// The deadline cuts sends short: unsent recipients are handed
		// back; only sends cut mid-flight may be repeated.
		{"deadline", "10ms", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, sim.Config{Latency: 5 * time.Millisecond})
			extra := map[string]string{"PUSHD_DISPATCHER_SHUTDOWN_TIMEOUT": tc.deadline}
			d := h.spawn(extra)
			o := h.publish(synth.Options{Campaign: "sigterm-" + tc.name, Recipients: 20000, IOSPercent: 50}, dispatcher.Normal)
			h.waitAccepted(4000, 2*time.Minute)
			if err := d.stop(); err != nil {
				t.Fatalf("pushd did not exit 0 on SIGTERM: %v", err)
			}
			got := accepted(h.sim)
			t.Logf("at SIGTERM exit: %d of 20000 accepted", got)
			if got >= 20000 {
				t.Fatal("campaign finished before SIGTERM; the test proves nothing")
			}
			h.spawn(extra)
			h.allDelivered(o, 2*time.Minute, time.Now())
			dups := h.delivered(o, tc.exact)
			workers := 256 + 128
			if dups > workers {
				t.Errorf("%d duplicates, more than the %d sends that can be in flight", dups, workers)
			}
			t.Logf("duplicates: %d", dups)
			h.countersAddUp()
		})
	}
}

// TestReconnectsMidCampaign resets the connection through a proxy of its
// own; other tests' connections do not go through it.
func TestReconnectsMidCampaign(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{Latency: 2 * time.Millisecond})
	proxy, url := queuetest.ProxyURL(t, h.url)
	d := h.start(map[string]string{"PUSHD_AMQP_URL": url})
	o := h.publish(synth.Options{Campaign: "reconnect", Recipients: 10000, IOSPercent: 50}, dispatcher.Normal)
	h.waitAccepted(2000, time.Minute)
	proxy.Reset()
	h.allDelivered(o, 2*time.Minute, time.Now())
	dups := h.delivered(o, false)
	t.Logf("duplicates after a connection reset: %d (redelivered batches that were in flight)", dups)
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	h.lanesEmpty()
	h.countersAddUp()
}

func TestZeroConfigUsesTheBuiltInSimulator(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	env := map[string]string{}
	for k, v := range h.env {
		if strings.HasPrefix(k, "PUSHD_AMQP_") || k == "PUSHD_LOG_FORMAT" || k == "PUSHD_STORE_DSN" {
			env[k] = v
		}
	}
	h.env = env
	d := h.start(nil)
	h.publish(synth.Options{Campaign: "zero-config", Recipients: 100, IOSPercent: 50}, dispatcher.Normal)
	testwait.For(t, time.Minute, "100 sends", costly(func() bool {
		m := scrape(t, d.metrics)
		return m[`pushd_sends_total{provider="apns",result="sent"}`]+m[`pushd_sends_total{provider="fcm",result="sent"}`] == 100
	}))
	m := scrape(t, d.metrics)
	if accepted := m[`pushsim_requests_total{code="200",provider="apns",result="ok"}`] + m[`pushsim_requests_total{code="200",provider="fcm",result="ok"}`]; accepted != 100 {
		t.Errorf("built-in simulator accepted %v, want 100", accepted)
	}
	if accepted(h.sim) != 0 {
		t.Error("the external simulator was used")
	}
	h.countersAddUp()
}

func TestBadConfigFailsNamingTheKey(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), nil, func(k string) string {
		return map[string]string{"PUSHD_APNS_HOST": "ftp://nope"}[k]
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "apns.host") {
		t.Fatalf("got %v", err)
	}
}

// metricLine is one sample of a /metrics page.
var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)

// scrape returns the samples of a /metrics page by series.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := metricLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			out[m[1]] = v
		}
	}
	return out
}

// testWriter takes a daemon's output: it sends each line to t.Log while
// the test runs (with -v), and keeps the lines for match and count.
type testWriter struct {
	t      *testing.T
	prefix string

	mu      sync.Mutex
	partial []byte // a line not ended yet
	lines   []string
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		w.lines = append(w.lines, line)
		if testing.Verbose() {
			w.t.Log(w.prefix + line)
		}
	}
	return len(p), nil
}

// match returns the submatches of re in the first line that has it, or
// nil.
func (w *testWriter) match(re *regexp.Regexp) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if m := re.FindStringSubmatch(l); m != nil {
			return m
		}
	}
	return nil
}

// count returns how many lines so far contain s.
func (w *testWriter) count(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range w.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}
