package fcm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// cannedAnswer is what the stand-in answers to one registration token.
type cannedAnswer struct {
	status     int
	body       string
	retryAfter string
	delay      bool // hold the answer until the request is canceled
}

// fakeFCM is a stand-in for the FCM v1 API and Google's token endpoint.
type fakeFCM struct {
	srv *httptest.Server

	mu          sync.Mutex
	answers     map[string]cannedAnswer
	sends       []fakeSend
	tokenCalls  []url.Values
	tokenAnswer *cannedAnswer // nil: grant an access token
}

type fakeSend struct {
	path    string
	proto   int
	auth    string
	token   string
	message map[string]any
	raw     []byte
}

const accessToken = "ya29.test-access-token"

func (f *fakeFCM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/token" {
		form, _ := url.ParseQuery(string(body))
		f.mu.Lock()
		f.tokenCalls = append(f.tokenCalls, form)
		ta := f.tokenAnswer
		f.mu.Unlock()
		if ta != nil {
			w.WriteHeader(ta.status)
			_, _ = io.WriteString(w, ta.body)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, accessToken)
		return
	}
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/messages:send") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var req struct {
		Message map[string]any `json:"message"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tok, _ := req.Message["token"].(string)
	f.mu.Lock()
	f.sends = append(f.sends, fakeSend{path: r.URL.Path, proto: r.ProtoMajor, auth: r.Header.Get("Authorization"), token: tok, message: req.Message, raw: body})
	a, ok := f.answers[tok]
	f.mu.Unlock()
	if !ok {
		a = cannedAnswer{status: 200, body: `{"name":"projects/p/messages/0:1"}`}
	}
	if a.delay {
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func (f *fakeFCM) answer(tok string, a cannedAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[tok] = a
}

func (f *fakeFCM) received() []fakeSend {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeSend(nil), f.sends...)
}

// sendsTo counts the requests that carried tok.
func (f *fakeFCM) sendsTo(tok string) int {
	n := 0
	for _, s := range f.received() {
		if s.token == tok {
			n++
		}
	}
	return n
}

func (f *fakeFCM) tokenRequests() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.tokenCalls...)
}

func (f *fakeFCM) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(f.srv.Certificate())
	return p
}

// startFake starts a TLS HTTP/2 stand-in.
func startFake(t *testing.T) *fakeFCM {
	t.Helper()
	f := &fakeFCM{answers: map[string]cannedAnswer{}}
	f.srv = httptest.NewUnstartedServer(f)
	f.srv.EnableHTTP2 = true
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected TLS handshake failures
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func newSender(t *testing.T, cfg Config) *Sender {
	t.Helper()
	s, err := New(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// setup starts a stand-in and a Sender without credentials pointed at it.
func setup(t *testing.T) (*Sender, *fakeFCM) {
	t.Helper()
	f := startFake(t)
	s := newSender(t, Config{Endpoint: f.srv.URL + "/v1", ProjectID: "demo", RootCAs: f.roots(), Timeout: 5 * time.Second})
	return s, f
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func prepare(t *testing.T, s *Sender, n *dispatcher.Notification) dispatcher.Message {
	t.Helper()
	m, err := s.Prepare(n)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return m
}

func send(m dispatcher.Message, tok string) dispatcher.Result {
	return m.Send(context.Background(), &dispatcher.Recipient{Platform: dispatcher.Android, Token: tok})
}

func regToken(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "fcm:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

func alert() *dispatcher.Notification {
	return &dispatcher.Notification{Title: "Spring sale", Body: "50% off today"}
}

func TestSendTimeoutIsOneAttempt(t *testing.T) {
	f := startFake(t)
	s := newSender(t, Config{Endpoint: f.srv.URL + "/v1", ProjectID: "demo", RootCAs: f.roots(), Timeout: 200 * time.Millisecond})
	m := prepare(t, s, alert())
	tok := regToken("slow")
	f.answer(tok, cannedAnswer{delay: true})
	start := time.Now()
	got := send(m, tok)
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "timeout"})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("send took %v with a 200ms timeout", d)
	}
	if n := f.sendsTo(tok); n != 1 {
		t.Errorf("stand-in got %d requests, want exactly 1", n)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	got = m.Send(ctx, &dispatcher.Recipient{Platform: dispatcher.Android, Token: tok})
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "canceled"})
}

// TestSendNetworkErrorIsOneAttempt proves the firebase client's retries of
// network errors are off: a server that accepts and drops each connection
// sees exactly one connection per send, and the send returns at once
// (the client would retry 4 times over 7.5 s).
func TestSendNetworkErrorIsOneAttempt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		accepts int
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepts++
			mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })

	s := newSender(t, Config{Endpoint: "http://" + ln.Addr().String() + "/v1", ProjectID: "demo", Timeout: 5 * time.Second})
	m := prepare(t, s, alert())
	const sends = 3
	start := time.Now()
	for i := range sends {
		got := send(m, regToken(fmt.Sprint("drop", i)))
		checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "network"})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%d sends took %v: the client slept between retries", sends, d)
	}
	mu.Lock()
	defer mu.Unlock()
	if accepts != sends {
		t.Errorf("server accepted %d connections for %d sends, want one each", accepts, sends)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSender(t, Config{Endpoint: "https://" + addr + "/v1", ProjectID: "demo", Timeout: 2 * time.Second})
	got := send(prepare(t, s, alert()), regToken("refused"))
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "network"})
}

func TestSendUntrustedServer(t *testing.T) {
	f := startFake(t)
	s := newSender(t, Config{Endpoint: f.srv.URL + "/v1", ProjectID: "demo", Timeout: 2 * time.Second}) // system roots
	got := send(prepare(t, s, alert()), regToken("untrusted"))
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "network"})
	if len(f.received()) != 0 {
		t.Error("send reached a server whose certificate is not trusted")
	}
}

func TestSendOverHTTP2AndPlainHTTP(t *testing.T) {
	s, f := setup(t)
	tok := regToken("h2")
	if r := send(prepare(t, s, alert()), tok); r.Outcome != dispatcher.Sent {
		t.Fatalf("send: %+v", r)
	}
	got := f.received()[0]
	if got.proto != 2 || got.path != "/v1/projects/demo/messages:send" || got.auth != "" {
		t.Errorf("request over HTTP/%d to %s with auth %q; want HTTP/2 to /v1/projects/demo/messages:send without auth", got.proto, got.path, got.auth)
	}
	if st, ok := s.sends.(*sendTransport); !ok || st.noH2.Load() {
		t.Errorf("sends to an HTTP/2 server through %T (no HTTP/2: %v), want the coalescing HTTP/2 transport", s.sends, ok && st.noH2.Load())
	}

	plain := &fakeFCM{answers: map[string]cannedAnswer{}}
	srv := httptest.NewServer(plain)
	t.Cleanup(srv.Close)
	s = newSender(t, Config{Endpoint: srv.URL + "/v1/", ProjectID: "demo"})
	if r := send(prepare(t, s, alert()), tok); r.Outcome != dispatcher.Sent {
		t.Fatalf("send over http: %+v", r)
	}
	if got := plain.received(); len(got) != 1 || got[0].path != "/v1/projects/demo/messages:send" {
		t.Errorf("plain stand-in got %+v", got)
	}
	if _, ok := s.sends.(*http.Transport); !ok {
		t.Errorf("sends to an http:// endpoint through %T, want net/http's transport", s.sends)
	}
}

// TestSendOverHTTP1TLS checks that an https stand-in that does not
// negotiate HTTP/2 is still sent to, over HTTP/1.1, every time.
func TestSendOverHTTP1TLS(t *testing.T) {
	f := &fakeFCM{answers: map[string]cannedAnswer{}}
	f.srv = httptest.NewTLSServer(f) // ALPN http/1.1 only
	t.Cleanup(f.srv.Close)
	s := newSender(t, Config{Endpoint: f.srv.URL + "/v1", ProjectID: "demo", RootCAs: f.roots(), Timeout: 5 * time.Second})
	m := prepare(t, s, alert())
	for i := range 3 {
		if r := send(m, regToken(fmt.Sprint("h1-", i))); r.Outcome != dispatcher.Sent {
			t.Fatalf("send %d: %+v", i, r)
		}
	}
	got := f.received()
	if len(got) != 3 {
		t.Fatalf("stand-in got %d requests, want 3", len(got))
	}
	for _, r := range got {
		if r.proto != 1 {
			t.Errorf("request over HTTP/%d, want HTTP/1.1", r.proto)
		}
	}
	if st, ok := s.sends.(*sendTransport); !ok || !st.noH2.Load() {
		t.Errorf("sends through %T, want a sendTransport that noted the server's lack of HTTP/2", s.sends)
	}
}

func TestSendConcurrent(t *testing.T) {
	s, f := setup(t)
	m := prepare(t, s, alert())
	const n = 200
	results := make(chan dispatcher.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results <- send(m, regToken(fmt.Sprint(i))) })
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.Outcome != dispatcher.Sent {
			t.Fatalf("send: %+v", r)
		}
	}
	seen := map[string]bool{}
	for _, r := range f.received() {
		seen[r.token] = true
	}
	if len(seen) != n {
		t.Errorf("stand-in saw %d distinct tokens, want %d", len(seen), n)
	}
}

// writeServiceAccount writes a service-account key whose token_uri points at
// tokenURI.
func writeServiceAccount(t *testing.T, tokenURI string) (path string, key *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sa := map[string]string{
		"type":           "service_account",
		"project_id":     "sa-project",
		"private_key_id": "key-1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "pushd@sa-project.iam.gserviceaccount.com",
		"client_id":      "1234567890",
		"token_uri":      tokenURI,
	}
	b, err := json.Marshal(sa)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "service-account.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

func TestServiceAccountAuth(t *testing.T) {
	f := startFake(t)
	credFile, key := writeServiceAccount(t, f.srv.URL+"/token")
	// ctx is canceled once New returns: later token refreshes must not
	// depend on it.
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, Config{Endpoint: f.srv.URL + "/v1", CredentialsFile: credFile, RootCAs: f.roots()}, testLogger(t))
	cancel()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	m := prepare(t, s, alert())
	for i := range 3 {
		if r := send(m, regToken(fmt.Sprint("sa", i))); r.Outcome != dispatcher.Sent {
			t.Fatalf("send: %+v", r)
		}
	}
	for _, got := range f.received() {
		if got.auth != "Bearer "+accessToken {
			t.Errorf("Authorization = %q, want the access token from the token endpoint", got.auth)
		}
		if got.path != "/v1/projects/sa-project/messages:send" {
			t.Errorf("path %s, want the credentials' project", got.path)
		}
	}
	calls := f.tokenRequests()
	if len(calls) != 1 {
		t.Fatalf("token endpoint called %d times for 3 sends, want 1", len(calls))
	}
	if g := calls[0].Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		t.Errorf("grant_type = %q", g)
	}
	claims := verifyRS256(t, calls[0].Get("assertion"), &key.PublicKey)
	if claims["iss"] != "pushd@sa-project.iam.gserviceaccount.com" || claims["aud"] != f.srv.URL+"/token" ||
		claims["scope"] != messagingScope {
		t.Errorf("assertion claims = %v", claims)
	}
}

// verifyRS256 checks a JWT's RS256 signature and returns its claims.
func verifyRS256(t *testing.T, jwt string, pub *rsa.PublicKey) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("assertion has %d parts", len(parts))
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("assertion signature: %v", err)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestServiceAccountRefused(t *testing.T) {
	f := startFake(t)
	f.tokenAnswer = &cannedAnswer{status: 400, body: `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`}
	credFile, _ := writeServiceAccount(t, f.srv.URL+"/token")
	s := newSender(t, Config{Endpoint: f.srv.URL + "/v1", CredentialsFile: credFile, RootCAs: f.roots(), ProjectID: "override"})
	got := send(prepare(t, s, alert()), regToken("refused"))
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "credential", Credential: true})
	if n := len(f.tokenRequests()); n != 1 {
		t.Errorf("token endpoint called %d times, want 1 (no retries)", n)
	}
	if n := len(f.received()); n != 0 {
		t.Errorf("%d sends reached FCM without a token", n)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIB"
	badKey := write("badkey.json", `{"type":"service_account","project_id":"p","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\n`+secret+`\n-----END PRIVATE KEY-----\n","token_uri":"https://127.0.0.1:1/token"}`)
	notPEM := write("notpem.json", `{"type":"service_account","project_id":"p","client_email":"a@b","private_key":"`+secret+`"}`)
	user := write("user.json", `{"type":"authorized_user","client_id":"x","client_secret":"`+secret+`","refresh_token":"r"}`)
	garbage := write("garbage.json", secret)
	noProject, _ := writeServiceAccount(t, "https://127.0.0.1:1/token")
	b, _ := os.ReadFile(noProject)
	noProject = write("noproject.json", strings.Replace(string(b), `"project_id":"sa-project"`, `"project_id":""`, 1))

	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no project, no credentials", Config{}, "project_id is required"},
		{"bad scheme", Config{ProjectID: "p", Endpoint: "ftp://x/v1"}, "scheme"},
		{"endpoint with query", Config{ProjectID: "p", Endpoint: "https://x/v1?k=v"}, "plain base URL"},
		{"negative concurrency", Config{ProjectID: "p", Concurrency: -1}, "concurrency"},
		{"negative timeout", Config{ProjectID: "p", Timeout: -1}, "timeout"},
		{"missing file", Config{CredentialsFile: filepath.Join(dir, "nope.json")}, "nope.json"},
		{"not JSON", Config{CredentialsFile: garbage}, "garbage.json"},
		{"not a service account", Config{CredentialsFile: user}, "authorized_user"},
		{"private key not PEM", Config{CredentialsFile: notPEM}, "not a PEM block"},
		{"private key does not parse", Config{CredentialsFile: badKey}, "does not parse"},
		{"no project id anywhere", Config{CredentialsFile: noProject}, "no project_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(context.Background(), tc.cfg, testLogger(t))
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q prints secret material", err)
			}
		})
	}
}

func TestCloseTwice(t *testing.T) {
	s, _ := setup(t)
	if r := send(prepare(t, s, alert()), regToken("close")); r.Outcome != dispatcher.Sent {
		t.Fatalf("send: %+v", r)
	}
	s.Close()
	s.Close()
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"":                             DefaultEndpoint,
		"http://127.0.0.1:9000":        "http://127.0.0.1:9000/v1",
		"http://127.0.0.1:9000/":       "http://127.0.0.1:9000/v1",
		"https://127.0.0.1:8443/v1":    "https://127.0.0.1:8443/v1",
		"https://127.0.0.1:8443/v1/":   "https://127.0.0.1:8443/v1",
		"https://proxy.example/fcm/v1": "https://proxy.example/fcm/v1",
	} {
		got, err := parseEndpoint(in)
		if err != nil || got != want {
			t.Errorf("parseEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://x", "http://", "https://u:p@x/v1", "http://x/v1?q=1"} {
		if _, err := parseEndpoint(bad); err == nil {
			t.Errorf("parseEndpoint(%q) accepted", bad)
		}
	}
}
