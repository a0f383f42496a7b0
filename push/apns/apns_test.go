package apns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sideshow/apns2"
	"golang.org/x/net/http2"

	"github.com/pushd/pushd/dispatcher"
)

// fakeAPNs is a stand-in for Apple's API: it answers each device token with
// the canned answer registered for it (200 otherwise) and records what it
// received.
type fakeAPNs struct {
	srv *httptest.Server

	mu       sync.Mutex
	answers  map[string]answerRow
	requests []fakeRequest
}

type fakeRequest struct {
	token  string
	proto  int
	remote string
	header http.Header
	body   []byte
	// wire is the request line and headers as received.
	wire string
}

func (f *fakeAPNs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if !ok || r.Method != http.MethodPost {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"reason":"BadPath"}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	wire, _ := httputil.DumpRequest(r, false)
	f.requests = append(f.requests, fakeRequest{token: tok, proto: r.ProtoMajor, remote: r.RemoteAddr, header: r.Header.Clone(), body: body, wire: string(wire)})
	a, ok := f.answers[tok]
	f.mu.Unlock()
	if !ok {
		a.status = http.StatusOK
	}
	w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000001")
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.WriteHeader(a.status)
	switch {
	case a.body != "":
		_, _ = io.WriteString(w, a.body)
	case a.status != http.StatusOK:
		v := map[string]any{"reason": a.reason}
		if a.timestamp != 0 {
			v["timestamp"] = a.timestamp
		}
		_ = json.NewEncoder(w).Encode(v)
	}
}

func (f *fakeAPNs) answer(tok string, a answerRow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[tok] = a
}

func (f *fakeAPNs) received() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeRequest(nil), f.requests...)
}

// startFake starts a TLS HTTP/2 stand-in. tlsConf, if not nil, is used as
// the server's TLS configuration (e.g. to ask for client certificates).
func startFake(t *testing.T, tlsConf *tls.Config) *fakeAPNs {
	t.Helper()
	f := &fakeAPNs{answers: map[string]answerRow{}}
	f.srv = httptest.NewUnstartedServer(f)
	f.srv.EnableHTTP2 = true
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected TLS handshake failures
	f.srv.TLS = tlsConf
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// roots returns a pool trusting the stand-in's certificate.
func (f *fakeAPNs) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(f.srv.Certificate())
	return p
}

// newSender builds a Sender for cfg and closes it at the end of the test.
func newSender(t *testing.T, cfg Config) *Sender {
	t.Helper()
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// setup starts a stand-in and a Sender pointed at it.
func setup(t *testing.T) (*Sender, *fakeAPNs) {
	t.Helper()
	f := startFake(t, nil)
	s := newSender(t, Config{Host: f.srv.URL, Topic: "com.example.app", RootCAs: f.roots(), Timeout: 5 * time.Second})
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

// deviceToken returns a well-formed APNs token derived from name.
func deviceToken(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func prepare(t *testing.T, s *Sender, n *dispatcher.Notification) dispatcher.Message {
	t.Helper()
	m, err := s.Prepare(n)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return m
}

func alert() *dispatcher.Notification {
	return &dispatcher.Notification{Title: "Spring sale", Body: "50% off today"}
}

func send(m dispatcher.Message, tok string) dispatcher.Result {
	return m.Send(context.Background(), &dispatcher.Recipient{Platform: dispatcher.IOS, Token: tok})
}

func TestSendClassifies(t *testing.T) {
	s, f := setup(t)
	m := prepare(t, s, alert())
	for _, row := range answerRows() {
		t.Run(row.name, func(t *testing.T) {
			tok := deviceToken(row.name)
			f.answer(tok, row)
			got := send(m, tok)
			checkResult(t, got, row.want)
			if got.Err != nil && strings.Contains(got.Err.Error(), tok) {
				t.Errorf("Err %q holds the full device token", got.Err)
			}
		})
	}
}

func TestSendHeadersAndPayload(t *testing.T) {
	s, f := setup(t)
	ttl := 3600
	n := alert()
	n.TTLSeconds = &ttl
	n.CollapseKey = "sale"
	n.Data = map[string]json.RawMessage{"deeplink": json.RawMessage(`"app://sale"`)}
	m := prepare(t, s, n)
	tok := deviceToken("headers")
	if r := send(m, tok); r.Outcome != dispatcher.Sent {
		t.Fatalf("send: %+v", r)
	}
	reqs := f.received()
	if len(reqs) != 1 {
		t.Fatalf("stand-in got %d requests, want 1", len(reqs))
	}
	req := reqs[0]
	if req.token != tok || req.proto != 2 {
		t.Errorf("token %s over HTTP/%d, want %s over HTTP/2", req.token, req.proto, tok)
	}
	for k, want := range map[string]string{
		"apns-topic":       "com.example.app",
		"apns-push-type":   "alert",
		"apns-priority":    "10",
		"apns-collapse-id": "sale",
		"authorization":    "",
	} {
		if got := req.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	var exp int64
	if _, err := fmt.Sscan(req.header.Get("apns-expiration"), &exp); err != nil {
		t.Fatalf("apns-expiration %q: %v", req.header.Get("apns-expiration"), err)
	}
	if want := time.Now().Add(time.Hour).Unix(); exp < want-5 || exp > want+5 {
		t.Errorf("apns-expiration = %d, want about %d", exp, want)
	}
	want := `{"aps":{"alert":{"title":"Spring sale","body":"50% off today"}},"deeplink":"app://sale"}`
	if string(req.body) != want {
		t.Errorf("body = %s\nwant   %s", req.body, want)
	}

	// Without a TTL no apns-expiration header is sent.
	m = prepare(t, s, alert())
	send(m, tok)
	reqs = f.received()
	if v := reqs[len(reqs)-1].header.Get("apns-expiration"); v != "" {
		t.Errorf("apns-expiration = %q without a TTL, want none", v)
	}
}

func TestSendTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	s := newSender(t, Config{Host: srv.URL, RootCAs: roots, Timeout: 200 * time.Millisecond})
	m := prepare(t, s, alert())

	start := time.Now()
	got := send(m, deviceToken("slow"))
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "timeout"})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("send took %v with a 200ms timeout", d)
	}

	// A caller that gives up is told so, not "timeout".
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	got = m.Send(ctx, &dispatcher.Recipient{Platform: dispatcher.IOS, Token: deviceToken("slow")})
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "canceled"})
}

func TestSendConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSender(t, Config{Host: "https://" + addr, Timeout: 2 * time.Second})
	tok := deviceToken("refused")
	got := send(prepare(t, s, alert()), tok)
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "network"})
	if strings.Contains(got.Err.Error(), tok) {
		t.Errorf("Err %q holds the full device token", got.Err)
	}
}

// writeP8 writes a fresh ECDSA P-256 key in Apple's .p8 form (PKCS#8 PEM).
func writeP8(t *testing.T) (path string, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "AuthKey_ABC123DEFG.p8")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

func TestTokenAuth(t *testing.T) {
	f := startFake(t, nil)
	keyFile, key := writeP8(t)
	s := newSender(t, Config{
		Host: f.srv.URL, RootCAs: f.roots(), Topic: "com.example.app",
		KeyFile: keyFile, KeyID: "ABC123DEFG", TeamID: "TEAM123456", Connections: 2,
	})
	m := prepare(t, s, alert())
	for i := range 4 {
		if r := send(m, deviceToken(fmt.Sprint("auth", i))); r.Outcome != dispatcher.Sent {
			t.Fatalf("send: %+v", r)
		}
	}
	reqs := f.received()
	bearer := reqs[0].header.Get("Authorization")
	jwt, ok := strings.CutPrefix(bearer, "bearer ")
	if !ok {
		t.Fatalf("authorization = %q, want a bearer token", bearer)
	}
	for _, r := range reqs[1:] {
		if got := r.header.Get("Authorization"); got != bearer {
			t.Errorf("pushes carry different provider tokens: %q and %q", bearer, got)
		}
	}
	header, claims := verifyES256(t, jwt, &key.PublicKey)
	if header["alg"] != "ES256" || header["kid"] != "ABC123DEFG" {
		t.Errorf("JWT header = %v", header)
	}
	iat, _ := claims["iat"].(float64)
	if claims["iss"] != "TEAM123456" || time.Since(time.Unix(int64(iat), 0)) > time.Minute {
		t.Errorf("JWT claims = %v", claims)
	}
}

// verifyES256 checks a JWT's ES256 signature and returns its header and
// claims.
func verifyES256(t *testing.T, jwt string, pub *ecdsa.PublicKey) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("JWT has %d parts", len(parts))
	}
	decode := func(s string, v any) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("JWT part: %v", err)
		}
		if v == nil {
			return
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("JWT part: %v", err)
		}
	}
	decode(parts[0], &header)
	decode(parts[1], &claims)
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("JWT signature: %d bytes, %v", len(sig), err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		t.Fatal("JWT signature does not verify with the .p8 public key")
	}
	return header, claims
}

func TestCertificateAuth(t *testing.T) {
	certPEM, keyPEM, leaf := newClientCert(t)
	path := filepath.Join(t.TempDir(), "apns.pem")
	if err := os.WriteFile(path, append(certPEM, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []byte
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			mu.Lock()
			got = r.TLS.PeerCertificates[0].Raw
			mu.Unlock()
		}
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	s := newSender(t, Config{Host: srv.URL, RootCAs: roots, CertFile: path})
	if r := send(prepare(t, s, alert()), deviceToken("cert")); r.Outcome != dispatcher.Sent {
		t.Fatalf("send: %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if string(got) != string(leaf) {
		t.Error("the server did not see our client certificate")
	}
}

func newClientCert(t *testing.T) (certPEM, keyPEM, der []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "Apple Push Services: com.example.app"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), der
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	const secret = "c2VjcmV0LWtleS1tYXRlcmlhbA"
	garbage := filepath.Join(dir, "garbage.p8")
	if err := os.WriteFile(garbage, []byte("-----BEGIN PRIVATE KEY-----\n"+secret+"\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "notpem.p8")
	if err := os.WriteFile(notPEM, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	certPEM, _, _ := newClientCert(t)
	certOnly := filepath.Join(dir, "certonly.pem")
	if err := os.WriteFile(certOnly, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	badP12 := filepath.Join(dir, "bad.p12")
	if err := os.WriteFile(badP12, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	host := "https://api.sandbox.push.apple.com"
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no host", Config{}, "host is required"},
		{"bad scheme", Config{Host: "ftp://x"}, "scheme"},
		{"host with query", Config{Host: "https://x/?a=b"}, "plain base URL"},
		{"partial token auth", Config{Host: host, KeyFile: "k.p8"}, "all three"},
		{"both auths", Config{Host: host, KeyFile: "k", KeyID: "i", TeamID: "t", CertFile: "c.pem"}, "not both"},
		{"negative connections", Config{Host: host, Connections: -1}, "connections"},
		{"negative timeout", Config{Host: host, Timeout: -time.Second}, "timeout"},
		{"missing key file", Config{Host: host, KeyFile: filepath.Join(dir, "nope.p8"), KeyID: "i", TeamID: "t"}, "nope.p8"},
		{"garbage key file", Config{Host: host, KeyFile: garbage, KeyID: "i", TeamID: "t"}, "garbage.p8"},
		{"key file not PEM", Config{Host: host, KeyFile: notPEM, KeyID: "i", TeamID: "t"}, "PEM"},
		{"PEM without key", Config{Host: host, CertFile: certOnly}, "no private key"},
		{"bad p12", Config{Host: host, CertFile: badP12, CertPassword: "hunter2"}, "bad.p12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg, testLogger(t))
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
			if strings.Contains(msg, secret) || strings.Contains(msg, "hunter2") {
				t.Errorf("error %q prints secret material", msg)
			}
		})
	}
}

func TestCloseTwice(t *testing.T) {
	s, _ := setup(t)
	if r := send(prepare(t, s, alert()), deviceToken("close")); r.Outcome != dispatcher.Sent {
		t.Fatalf("send: %+v", r)
	}
	s.Close()
	s.Close()
}

func TestExpiredProviderTokenIsRenewedWithinApplesRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		age   time.Duration
		renew bool
	}{
		// apns2 renews at 50 minutes; Apple may still call a token expired
		// earlier (clock skew, revocation): renewed, since it is over 20
		// minutes old.
		{"older than 20 minutes", 25 * time.Minute, true},
		// Renewing sooner would draw TooManyProviderTokenUpdates: kept,
		// the push is retried later.
		{"younger than 20 minutes", 5 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, nil)
			keyFile, _ := writeP8(t)
			s := newSender(t, Config{
				Host: f.srv.URL, RootCAs: f.roots(), Topic: "com.example.app",
				KeyFile: keyFile, KeyID: "ABC123DEFG", TeamID: "TEAM123456", Connections: 1,
			})
			s.tok.Lock()
			s.tok.IssuedAt = time.Now().Add(-tc.age).Unix()
			s.tok.Unlock()
			refused, fine := deviceToken("refused"), deviceToken("fine")
			f.answer(refused, answerRow{status: http.StatusForbidden, reason: "ExpiredProviderToken"})
			m := prepare(t, s, alert())
			got := send(m, refused)
			if got.Outcome != dispatcher.RetryLater || !got.Credential {
				t.Fatalf("403 ExpiredProviderToken: %+v, want a credential fault to retry", got)
			}
			if r := send(m, fine); r.Outcome != dispatcher.Sent {
				t.Fatalf("next push: %+v", r)
			}
			reqs := f.received()
			before, after := reqs[0].header.Get("Authorization"), reqs[1].header.Get("Authorization")
			if renewed := before != after; renewed != tc.renew {
				t.Errorf("token renewed: %v, want %v", renewed, tc.renew)
			}
		})
	}
}

// TestRequestIsApns2s checks that a push is the request apns2's Client.Push
// sends for the same notification: method, path, every header, body, with
// a certificate or a provider token, with and without an expiration.
func TestRequestIsApns2s(t *testing.T) {
	ttl := 3600
	for _, tc := range []struct {
		name     string
		n        *dispatcher.Notification
		tokenAut bool
	}{
		{"alert", alert(), false},
		{"everything", &dispatcher.Notification{Title: "a <b>", Body: "c", Sound: "default", CollapseKey: "sale", TTLSeconds: &ttl,
			Priority: "normal", APNs: dispatcher.APNsOptions{Topic: "com.example.other", PushType: "alert"},
			Data: map[string]json.RawMessage{"k": json.RawMessage(`[1, "\u2028"]`)}}, false},
		{"background", &dispatcher.Notification{APNs: dispatcher.APNsOptions{PushType: "background"}}, false},
		{"provider token", alert(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, nil)
			cfg := Config{Host: f.srv.URL, Topic: "com.example.app", RootCAs: f.roots(), Connections: 1}
			if tc.tokenAut {
				cfg.KeyFile, _ = writeP8(t)
				cfg.KeyID, cfg.TeamID = "ABC123DEFG", "TEAM123456"
			}
			s := newSender(t, cfg)
			m := prepare(t, s, tc.n)
			tok := deviceToken(tc.name)
			if r := send(m, tok); r.Outcome != dispatcher.Sent {
				t.Fatalf("pushd: %+v", r)
			}

			var c *apns2.Client
			if s.tok != nil {
				c = apns2.NewTokenClient(s.tok)
			} else {
				c = apns2.NewClient(tls.Certificate{})
			}
			c.Host = f.srv.URL
			c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: f.roots()} //lint:ignore SA1019 apns2's own transport type
			n := m.(*message).tmpl
			n.DeviceToken = tok
			pushd := f.received()[0]
			if v := pushd.header.Get("apns-expiration"); v != "" {
				exp, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				n.Expiration = time.Unix(exp, 0)
			}
			if resp, err := c.Push(&n); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("apns2: %v, %v", resp, err)
			}
			bare := f.received()[1]
			if pushd.wire != bare.wire {
				t.Errorf("pushd sends\n%s\napns2 sends\n%s", pushd.wire, bare.wire)
			}
			if string(pushd.body) != string(bare.body) {
				t.Errorf("pushd sends %s\napns2 sends %s", pushd.body, bare.body)
			}
		})
	}
}
