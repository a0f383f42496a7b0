// Package sim is a local stand-in for Apple's and Google's push services:
// APNs (HTTP/2 over TLS, as github.com/sideshow/apns2 speaks it), FCM HTTP v1
// (JSON, as firebase.google.com/go/v4/messaging speaks it) and the Google
// OAuth2 token endpoint a service-account file points at. The real clients
// work against it unchanged, which makes it the provider for demos, tests and
// benchmarks of pushd.
//
// It validates requests the way the real services do, answers with their
// wire formats, adds configurable latency and a random error mix (invalid
// tokens, 429 with Retry-After, 5xx), and counts what it received. Tokens
// with known prefixes get deterministic errors:
//
//	APNs "deadbeefdeadbeef…"   410 Unregistered
//	APNs "bad0bad0bad0bad0…"   400 BadDeviceToken
//	FCM  "unregistered…"       404 NOT_FOUND / UNREGISTERED
//	FCM  "invalid…"            400 INVALID_ARGUMENT
//	FCM  "thirdpartyauth…"     401 UNAUTHENTICATED / THIRD_PARTY_AUTH_ERROR
//
// Routes, all on one TLS listener (HTTP/2 and HTTP/1.1):
//
//	POST /3/device/{token}                       APNs
//	POST /v1/projects/{project}/messages:send    FCM HTTP v1
//	POST /token                                  OAuth2 JWT-bearer grant
//	GET  /sim/stats                              Stats as JSON
//	GET  /sim/tokens/{token}                     {"token","count","accepted"}
//	GET  /sim/recorded/{provider}                recorded requests (apns, fcm)
//	POST /sim/reset                              Reset
//	GET  /sim/config, PUT /sim/config            the configuration (below)
//	GET  /sim/ca.pem                             the CA certificate
//	GET  /                                       this list
//
// The body of PUT /sim/config (and the answer of GET) looks like this; a PUT
// changes only the fields it gives and refuses unknown ones:
//
//	{
//	  "latency": "5ms",        // Go duration string, or a number of milliseconds
//	  "jitter": 2,             // same (2ms)
//	  "retry_after": "2s",     // same; sent as whole seconds, rounded up
//	  "apns_errors": "too_many=0.05,unavailable=0.01", // ParseErrorMix syntax,
//	  "fcm_errors": {"unregistered": 0.01},            // or an object of the same keys
//	  "track_tokens": true,
//	  "record_last": 100,
//	  "seed": 42
//	}
//
// It is not a load generator, not a delivery service (nothing reaches a
// device), and it checks the shape of credentials, not their signatures.
package sim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxStreams is the HTTP/2 concurrent stream limit per connection; Apple
// announces 1000.
const maxStreams = 1000

// Server is the simulator. Create it with New, then Start it; all methods
// are safe for concurrent use.
type Server struct {
	logger  *slog.Logger
	certs   *certs
	mux     *http.ServeMux
	metrics *metrics

	state atomic.Pointer[state]
	rngMu sync.Mutex
	rng   *rand.Rand

	counters  [numProviders]counters
	tokens    tokenTable
	recorders [numProviders]recorder

	waitMu   sync.Mutex
	waiters  map[*waiter]struct{}
	nWaiters atomic.Int32

	issued      sync.Map // OAuth2 access token -> expiry (time.Time)
	nextMessage atomic.Uint64
	bearer      atomic.Pointer[apnsBearer]
	bufs        sync.Pool // *bytes.Buffer for request bodies

	mu   sync.Mutex // guards srv, addr, done
	srv  *http.Server
	addr string
	done chan struct{}
}

// state is the configuration in force with what is derived from it. It is
// replaced as a whole by SetConfig.
type state struct {
	cfg        Config
	retryAfter string        // Retry-After header value, "" for none
	retryWait  time.Duration // the wait that header asks for
	mix        [numProviders][numMixErrors]float64
	mixOn      [numProviders]bool
}

func newState(cfg Config) *state {
	cfg.Latency = max(cfg.Latency, 0)
	cfg.Jitter = max(cfg.Jitter, 0)
	cfg.RetryAfter = max(cfg.RetryAfter, 0)
	cfg.RecordLast = min(max(cfg.RecordLast, 0), maxRecordLast)
	st := &state{cfg: cfg, retryAfter: retryAfterValue(cfg.RetryAfter)}
	st.retryWait = cfg.RetryAfter.Round(time.Second)
	if st.retryWait < cfg.RetryAfter {
		st.retryWait += time.Second
	}
	st.mix[provAPNs] = cfg.APNsErrors.cumulative()
	st.mix[provFCM] = cfg.FCMErrors.cumulative()
	st.mixOn[provAPNs] = st.mix[provAPNs][numMixErrors-1] > 0
	st.mixOn[provFCM] = st.mix[provFCM][numMixErrors-1] > 0
	return st
}

// New returns a simulator with cfg, a fresh in-memory ECDSA CA and a leaf
// certificate for 127.0.0.1, ::1 and localhost. Its metrics are registered on
// reg unless reg is nil; logger nil discards logs. It does not listen until
// Start.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := newCerts(time.Now())
	if err != nil {
		return nil, fmt.Errorf("sim certificates: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("sim metrics: %w", err)
	}
	s := &Server{
		logger:  logger,
		certs:   c,
		mux:     http.NewServeMux(),
		metrics: m,
		waiters: make(map[*waiter]struct{}),
		rng:     rand.New(rand.NewPCG(seedOf(cfg.Seed))),
	}
	s.bufs.New = func() any { return new(bytes.Buffer) }
	s.tokens.init()
	for p := range numProviders {
		m.bind(&s.counters[p], p)
	}
	s.state.Store(newState(cfg))
	s.routes()
	return s, nil
}

func seedOf(seed int64) (uint64, uint64) {
	if seed == 0 {
		return rand.Uint64(), rand.Uint64()
	}
	return uint64(seed), uint64(seed) ^ 0x9e3779b97f4a7c15
}

// SetConfig replaces the configuration at run time; requests already
// waiting out their latency keep the old one. Out-of-range values are
// clamped (negative durations to 0, error probabilities so they add up to at
// most 1); use Config.Validate first to refuse them instead. A non-zero Seed
// restarts the error-mix random sequence.
func (s *Server) SetConfig(cfg Config) {
	if err := cfg.Validate(); err != nil {
		s.logger.Warn("sim config clamped", slog.Any("error", err))
	}
	if cfg.Seed != 0 {
		s.rngMu.Lock()
		s.rng = rand.New(rand.NewPCG(seedOf(cfg.Seed)))
		s.rngMu.Unlock()
	}
	st := newState(cfg)
	s.state.Store(st)
	for p := range s.recorders {
		s.recorders[p].setSize(st.cfg.RecordLast)
	}
}

// Config returns the configuration in force (after clamping).
func (s *Server) Config() Config { return s.state.Load().cfg }

// draw returns the random error for one request of provider p, or mixNone.
func (s *Server) draw(p provider, st *state) mixError {
	if !st.mixOn[p] {
		return mixNone
	}
	s.rngMu.Lock()
	u := s.rng.Float64()
	s.rngMu.Unlock()
	return pick(&st.mix[p], u)
}

// delay waits out the configured latency. It reports false when the
// request's context ended first.
func delay(r *http.Request, st *state) bool {
	d := st.cfg.Latency
	if j := st.cfg.Jitter; j > 0 {
		d += time.Duration(rand.Int64N(2*int64(j)+1)) - j
	}
	if d <= 0 {
		return r.Context().Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves TLS
// with HTTP/2 and HTTP/1.1 in the background. It may be called again after
// Stop, with the same address to simulate a provider coming back.
func (s *Server) Start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return fmt.Errorf("sim: already serving on %s", s.addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sim: listen: %w", err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv := &http.Server{
		Handler: s.mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{s.certs.leaf},
			MinVersion:   tls.VersionTLS12,
		},
		Protocols:         &protocols,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       10 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("sim: serve", slog.Any("error", err))
		}
	}()
	s.srv, s.done, s.addr = srv, done, ln.Addr().String()
	s.logger.Info("simulator listening", slog.String("url", "https://"+s.addr))
	return nil
}

// Stop closes the listener and every connection at once, as an outage
// would, and waits for the serving goroutine to end. Counts are kept; Start
// may be called again. Stopping a stopped server does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	<-s.done
	s.srv, s.done = nil, nil
	s.logger.Info("simulator stopped", slog.String("addr", s.addr))
	if err != nil {
		return fmt.Errorf("sim: stop: %w", err)
	}
	return nil
}

// Addr returns the host:port bound by the last Start ("" before any).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL returns "https://" + Addr(), the base URL for both providers: the
// APNs host, the FCM endpoint with "/v1" appended, the token URI with
// "/token" appended.
func (s *Server) URL() string { return "https://" + s.Addr() }

// CACertPEM returns the PEM of the CA that signed the server certificate.
func (s *Server) CACertPEM() []byte { return bytes.Clone(s.certs.caPEM) }

// CertPool returns a pool trusting the simulator's CA, for a client's
// tls.Config.RootCAs.
func (s *Server) CertPool() *x509.CertPool { return s.certs.pool.Clone() }

// Handler returns the simulator's routes, for tests with httptest or for
// mounting elsewhere.
func (s *Server) Handler() http.Handler { return s.mux }

// Handle adds a route to the simulator's mux, e.g. "GET /metrics". It is
// safe to call at any time; like http.ServeMux.Handle it panics if pattern
// conflicts with a route already registered.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// routes registers every route of the simulator.
func (s *Server) routes() {
	s.mux.HandleFunc("POST /3/device/{token}", s.handleAPNs)
	s.mux.HandleFunc("/3/", s.handleAPNsOther)
	s.mux.HandleFunc("POST /v1/projects/{project}/messages:send", s.handleFCM)
	s.mux.HandleFunc("/v1/", s.handleFCMOther)
	s.mux.HandleFunc("POST /token", s.handleToken)
	s.mux.HandleFunc("GET /sim/stats", s.handleStats)
	s.mux.HandleFunc("GET /sim/tokens/{token}", s.handleToken1)
	s.mux.HandleFunc("GET /sim/recorded/{provider}", s.handleRecorded)
	s.mux.HandleFunc("POST /sim/reset", s.handleReset)
	s.mux.HandleFunc("GET /sim/config", s.handleGetConfig)
	s.mux.HandleFunc("PUT /sim/config", s.handlePutConfig)
	s.mux.HandleFunc("GET /sim/ca.pem", s.handleCA)
	s.mux.HandleFunc("GET /{$}", s.handleIndex)
}

// readBody reads at most limit+1 bytes of the request body into a pooled
// buffer; release it with putBuf.
func (s *Server) readBody(r *http.Request, limit int64) (*bytes.Buffer, error) {
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := buf.ReadFrom(&io.LimitedReader{R: r.Body, N: limit + 1})
	return buf, err
}

func (s *Server) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 256<<10 {
		s.bufs.Put(b)
	}
}
