package sim

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sideshow/apns2"
	"golang.org/x/net/http2"
)

// Device tokens used across the tests.
const (
	goodToken  = "1111111111111111111111111111111111111111111111111111111111111111"
	goodToken2 = "2222222222222222222222222222222222222222222222222222222222222222"
	goneToken  = APNsUnregisteredPrefix + "000000000000000000000000000000000000000000000000"
	badToken   = APNsBadTokenPrefix + "000000000000000000000000000000000000000000000000"
)

// testLogger sends logs to t.Log until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// bundle is a started simulator and what tests need around it.
type bundle struct {
	sim  *Server
	reg  *prometheus.Registry
	apns *apns2.Client
	raw  *http.Client // HTTP/2 client trusting the simulator
}

// setup starts a simulator with cfg on a free loopback port and returns it
// with clients that trust it. Everything is stopped at the end of the test.
func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, testLogger(t), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	// apns2 builds its own clients on golang.org/x/net/http2.Transport, so
	// the tests use that too, though x/net now points at net/http.
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}} //lint:ignore SA1019 the transport apns2 uses
	t.Cleanup(tr.CloseIdleConnections)                                          //lint:ignore SA1019 the transport apns2 uses
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return &bundle{
		sim:  s,
		reg:  reg,
		apns: &apns2.Client{HTTPClient: hc, Host: s.URL()},
		raw:  hc,
	}
}

// do sends a raw request to the simulator and returns status, headers and
// body.
func (b *bundle) do(t *testing.T, method, path string, header http.Header, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, b.sim.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := b.raw.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, resp.Header, out
}

// counterValue returns the value of the counter name whose label values are
// labels, in label-name order (code, provider, result), as gathered from reg; 0 if absent.
func counterValue(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			lps := m.GetLabel() // sorted by name
			if len(lps) != len(labels) {
				continue
			}
			for i, lp := range lps {
				if lp.GetValue() != labels[i] {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func push(t *testing.T, c *apns2.Client, n *apns2.Notification) *apns2.Response {
	t.Helper()
	if n.Payload == nil {
		n.Payload = []byte(`{"aps":{"alert":"hello"}}`)
	}
	res, err := c.Push(n)
	if err != nil {
		t.Fatalf("push to %s: %v", n.DeviceToken[:8], err)
	}
	return res
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative latency", Config{Latency: -time.Second}, "Latency"},
		{"negative jitter", Config{Jitter: -1}, "Jitter"},
		{"negative retry after", Config{RetryAfter: -1}, "RetryAfter"},
		{"record last", Config{RecordLast: -1}, "RecordLast"},
		{"apns mix", Config{APNsErrors: ErrorMix{TooMany: 1.5}}, "APNsErrors"},
		{"fcm mix sum", Config{FCMErrors: ErrorMix{TooMany: 0.6, Internal: 0.6}}, "FCMErrors"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestNewRegistersMetricsOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{}, nil, reg); err != nil {
		t.Fatalf("first New: %v", err)
	}
	if _, err := New(Config{}, nil, reg); err == nil {
		t.Fatal("second New on the same registry: want a duplicate registration error")
	}
	if _, err := New(Config{}, nil, nil); err != nil {
		t.Fatalf("New with nil registry: %v", err)
	}
}

func TestStopThenStartOnSameAddress(t *testing.T) {
	b := setup(t, Config{TrackTokens: true})
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	addr := b.sim.Addr()

	if err := b.sim.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := b.sim.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := b.apns.Push(&apns2.Notification{DeviceToken: goodToken, Payload: []byte(`{"aps":{}}`)}); err == nil {
		t.Fatal("push to a stopped simulator succeeded")
	}

	if err := b.sim.Start(addr); err != nil {
		t.Fatalf("Start again on %s: %v", addr, err)
	}
	if err := b.sim.Start(addr); err == nil {
		t.Fatal("Start while serving: want an error")
	}
	if b.sim.Addr() != addr {
		t.Fatalf("Addr = %s after restart, want %s", b.sim.Addr(), addr)
	}
	// The client may still hold the dead connection for a moment: retry
	// until a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := b.apns.Push(&apns2.Notification{DeviceToken: goodToken, Payload: []byte(`{"aps":{}}`)})
		if err == nil && res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("push after restart: %v %v", res, err)
		}
	}
	if got := b.sim.Count(goodToken); got != 2 {
		t.Errorf("Count after restart = %d, want 2 (counts survive Stop)", got)
	}
}

func TestLatencyAndCanceledRequests(t *testing.T) {
	const latency = 80 * time.Millisecond
	b := setup(t, Config{Latency: latency})
	start := time.Now()
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	if took := time.Since(start); took < latency {
		t.Errorf("answer took %v, want at least the latency %v", took, latency)
	}

	// A client that gives up during the latency gets no answer, and the
	// request is counted as canceled.
	b.sim.SetConfig(Config{Latency: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/3/device/"+goodToken, strings.NewReader(`{"aps":{}}`))
	rec := httptest.NewRecorder()
	b.sim.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("apns-id") != "" {
		t.Errorf("canceled request got an answer: %d %q", rec.Code, rec.Body)
	}
	if got := b.sim.Stats().APNs.Results; got["canceled"] != 1 || got["200"] != 1 {
		t.Errorf("results = %v, want 1 canceled and 1 accepted", got)
	}
}

func TestJitterStaysInRange(t *testing.T) {
	st := newState(Config{Latency: 0, Jitter: time.Millisecond})
	req, _ := http.NewRequest("GET", "/", nil)
	for range 50 {
		if !delay(req, st) {
			t.Fatal("delay with jitter around 0 reported a cancel")
		}
	}
}

func TestErrorMixDrawIsSeededAndProportional(t *testing.T) {
	cfg := Config{Seed: 7, APNsErrors: ErrorMix{Unregistered: 0.1, TooMany: 0.3}}
	s1, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	var counts [numMixErrors + 1]int
	for i := range n {
		e1, e2 := s1.draw(provAPNs, s1.state.Load()), s2.draw(provAPNs, s2.state.Load())
		if e1 != e2 {
			t.Fatalf("draw %d differs between two simulators with the same seed: %d vs %d", i, e1, e2)
		}
		counts[e1+1]++
	}
	check := func(name string, got int, p float64) {
		t.Helper()
		if want := p * n; float64(got) < want*0.9 || float64(got) > want*1.1 {
			t.Errorf("%s drawn %d times in %d, want about %.0f", name, got, n, want)
		}
	}
	check("unregistered", counts[mixUnregistered+1], 0.1)
	check("too_many", counts[mixTooMany+1], 0.3)
	check("none", counts[0], 0.6)
	if counts[mixBadToken+1]+counts[mixUnavailable+1]+counts[mixInternal+1] != 0 {
		t.Errorf("errors with probability 0 were drawn: %v", counts)
	}
	if e := s1.draw(provFCM, s1.state.Load()); e != mixNone {
		t.Errorf("FCM draw with an empty mix = %d, want none", e)
	}
}

func TestServesHTTP1AndHTTP2(t *testing.T) {
	b := setup(t, Config{})
	tests := []struct {
		name      string
		forceH2   bool
		wantProto string
	}{
		{"http/1.1", false, "HTTP/1.1"},
		{"h2", true, "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A custom TLSClientConfig turns off HTTP/2 unless forced.
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.sim.CertPool()}, ForceAttemptHTTP2: tt.forceH2}
			t.Cleanup(tr.CloseIdleConnections)
			resp, err := (&http.Client{Transport: tr}).Post(b.sim.URL()+"/3/device/"+goodToken, "application/json", strings.NewReader(`{"aps":{}}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Proto != tt.wantProto {
				t.Errorf("answer = %d over %s, want 200 over %s", resp.StatusCode, resp.Proto, tt.wantProto)
			}
		})
	}
}
