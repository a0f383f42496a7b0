package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineWriter collects what run writes and hands each complete line to a
// channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	all   strings.Builder
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 1000)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line) // incomplete: keep for later
			break
		}
		select {
		case w.lines <- strings.TrimSuffix(line, "\n"):
		default:
		}
	}
	return len(p), nil
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// waitURL waits for the ready line and returns its URL.
func waitURL(t *testing.T, w *lineWriter, done <-chan error) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line := <-w.lines:
			if url, ok := strings.CutPrefix(line, "pushsim listening on "); ok {
				return url
			}
		case err := <-done:
			t.Fatalf("run returned before being ready: %v\n%s", err, w)
		case <-timeout:
			t.Fatalf("no ready line after 10s:\n%s", w)
		}
	}
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestRunServesAndStops(t *testing.T) {
	dir := t.TempDir()
	caPath, saPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "sa.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := newLineWriter()
	done := make(chan error, 1)
	args := []string{"-ca-out", caPath, "-service-account-out", saPath, "-project", "demo",
		"-log-format", "json", "-apns-errors", "too_many=1", "-retry-after", "2s"}
	go func() {
		done <- run(ctx, args, env(map[string]string{"PUSHSIM_ADDR": "127.0.0.1:0", "PUSHSIM_LOG_LEVEL": "debug"}), out)
	}()
	url := waitURL(t, out, done)
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("URL = %q", url)
	}

	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatalf("-ca-out: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("-ca-out is not a PEM certificate: %.40q", caPEM)
	}
	var sa struct {
		Type      string `json:"type"`
		ProjectID string `json:"project_id"`
		TokenURI  string `json:"token_uri"`
	}
	raw, err := os.ReadFile(saPath)
	if err != nil {
		t.Fatalf("-service-account-out: %v", err)
	}
	if err := json.Unmarshal(raw, &sa); err != nil {
		t.Fatalf("service account JSON: %v", err)
	}
	if sa.Type != "service_account" || sa.ProjectID != "demo" || sa.TokenURI != url+"/token" {
		t.Errorf("service account = %+v, want token_uri %s/token", sa, url)
	}

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(method, path, body string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	status, h, body := get("POST", "/3/device/"+strings.Repeat("ab", 32), `{"aps":{}}`)
	if status != 429 || h.Get("Retry-After") != "2" || !strings.Contains(body, "TooManyRequests") {
		t.Errorf("APNs push with too_many=1 = %d %q %s", status, h.Get("Retry-After"), body)
	}
	if status, _, body := get("GET", "/sim/stats", ""); status != 200 || !strings.Contains(body, `"429 TooManyRequests": 1`) {
		t.Errorf("GET /sim/stats = %d %s", status, body)
	}
	status, _, body = get("GET", "/metrics", "")
	if status != 200 || !strings.Contains(body, `pushsim_requests_total{code="429",provider="apns",result="TooManyRequests"} 1`) ||
		!strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics = %d, missing the request counter or Go metrics:\n%.2000s", status, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(out.String(), `"msg":"pushsim stopping"`) {
		t.Errorf("no JSON stop log in output:\n%s", out)
	}
}

func TestRunRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"-bogus"}, nil, "flag provided but not defined: -bogus"},
		{"positional argument", []string{"-addr", "127.0.0.1:0", "extra"}, nil, `unexpected arguments ["extra"]`},
		{"bad duration", []string{"-latency", "soon"}, nil, `invalid value "soon" for flag -latency`},
		{"negative latency", []string{"-latency", "-1s"}, nil, "-latency -1s: must be 0 or more"},
		{"negative record-last", []string{"-record-last", "-1"}, nil, "-record-last -1"},
		{"huge record-last", []string{"-record-last", "100000000"}, nil, "RecordLast"},
		{"bad apns mix", []string{"-apns-errors", "timeout=0.1"}, nil, `-apns-errors: error mix "timeout=0.1": unknown key`},
		{"bad fcm mix", []string{"-fcm-errors", "too_many=2"}, nil, "-fcm-errors"},
		{"bad log format", []string{"-log-format", "xml"}, nil, `-log-format "xml"`},
		{"bad log level", []string{"-log-level", "loud"}, nil, `-log-level "loud"`},
		{"bad env", nil, map[string]string{"PUSHSIM_SEED": "x"}, `PUSHSIM_SEED="x": invalid value for -seed`},
		{"bad address", []string{"-addr", "127.0.0.1:99999"}, nil, "listen"},
		{"unwritable ca-out", []string{"-addr", "127.0.0.1:0", "-ca-out", "/nonexistent/dir/ca.pem"}, nil, "-ca-out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, tt.args, env(tt.env), &out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
			if strings.Contains(out.String(), "listening on") {
				t.Errorf("reported ready despite the error:\n%s", out.String())
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, env(nil), &out); err != nil {
		t.Fatalf("run -h = %v, want nil", err)
	}
	for _, want := range []string{"Usage: pushsim", "-apns-errors", "-service-account-out", "PUSHSIM_"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReachableURL(t *testing.T) {
	tests := map[string]string{
		"127.0.0.1:8443": "https://127.0.0.1:8443",
		"0.0.0.0:8443":   "https://127.0.0.1:8443",
		"[::]:8443":      "https://127.0.0.1:8443",
		"[::1]:8443":     "https://[::1]:8443",
		"localhost:1":    "https://localhost:1",
	}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			if got := reachableURL(in); got != want {
				t.Errorf("reachableURL(%q) = %q, want %q", in, got, want)
			}
		})
	}
}
