package sim

import (
	"context"
	"hash/maphash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Provider names, as used by Recorded, in Stats and in metric labels.
const (
	APNs = "apns"
	FCM  = "fcm"
)

// provider indexes the two simulated services.
type provider uint8

const (
	provAPNs provider = iota
	provFCM
	numProviders
)

func (p provider) String() string {
	if p == provAPNs {
		return APNs
	}
	return FCM
}

// kind is one possible answer of the simulator. Each is counted separately.
type kind uint8

const (
	kindOK       kind = iota // 200
	kindDryRun               // FCM 200 for validate_only
	kindCanceled             // the client went away before the answer

	kindAPNsBadDeviceToken
	kindAPNsMissingDeviceToken
	kindAPNsPayloadEmpty
	kindAPNsBadPayload
	kindAPNsBadPriority
	kindAPNsBadExpirationDate
	kindAPNsInvalidPushType
	kindAPNsMissingTopic
	kindAPNsBadMessageID
	kindAPNsBadCollapseID
	kindAPNsInvalidProviderToken
	kindAPNsExpiredProviderToken
	kindAPNsBadPath
	kindAPNsMethodNotAllowed
	kindAPNsUnregistered
	kindAPNsPayloadTooLarge
	kindAPNsTooManyRequests
	kindAPNsInternalServerError
	kindAPNsServiceUnavailable

	kindFCMInvalidArgument
	kindFCMUnauthenticated
	kindFCMThirdPartyAuth
	kindFCMUnregistered
	kindFCMNotFound
	kindFCMQuotaExceeded
	kindFCMInternal
	kindFCMUnavailable

	numKinds
)

// kindInfo describes an answer: its HTTP status, the provider's reason
// (APNs reason, FCM errorCode; "" for success), and the key it is counted
// under in ProviderStats.Results.
type kindInfo struct {
	status int
	reason string
	key    string
	// apns and fcm tell which provider can give this answer.
	apns, fcm bool
}

// kinds is the read-only table of every answer.
var kinds = [numKinds]kindInfo{
	kindOK:       {200, "", "200", true, true},
	kindDryRun:   {200, "", "200 validate_only", false, true},
	kindCanceled: {0, "canceled", "canceled", true, true},

	kindAPNsBadDeviceToken:       {400, "BadDeviceToken", "400 BadDeviceToken", true, false},
	kindAPNsMissingDeviceToken:   {400, "MissingDeviceToken", "400 MissingDeviceToken", true, false},
	kindAPNsPayloadEmpty:         {400, "PayloadEmpty", "400 PayloadEmpty", true, false},
	kindAPNsBadPayload:           {400, "BadPayload", "400 BadPayload", true, false},
	kindAPNsBadPriority:          {400, "BadPriority", "400 BadPriority", true, false},
	kindAPNsBadExpirationDate:    {400, "BadExpirationDate", "400 BadExpirationDate", true, false},
	kindAPNsInvalidPushType:      {400, "InvalidPushType", "400 InvalidPushType", true, false},
	kindAPNsMissingTopic:         {400, "MissingTopic", "400 MissingTopic", true, false},
	kindAPNsBadMessageID:         {400, "BadMessageId", "400 BadMessageId", true, false},
	kindAPNsBadCollapseID:        {400, "BadCollapseId", "400 BadCollapseId", true, false},
	kindAPNsInvalidProviderToken: {403, "InvalidProviderToken", "403 InvalidProviderToken", true, false},
	kindAPNsExpiredProviderToken: {403, "ExpiredProviderToken", "403 ExpiredProviderToken", true, false},
	kindAPNsBadPath:              {404, "BadPath", "404 BadPath", true, false},
	kindAPNsMethodNotAllowed:     {405, "MethodNotAllowed", "405 MethodNotAllowed", true, false},
	kindAPNsUnregistered:         {410, "Unregistered", "410 Unregistered", true, false},
	kindAPNsPayloadTooLarge:      {413, "PayloadTooLarge", "413 PayloadTooLarge", true, false},
	kindAPNsTooManyRequests:      {429, "TooManyRequests", "429 TooManyRequests", true, false},
	kindAPNsInternalServerError:  {500, "InternalServerError", "500 InternalServerError", true, false},
	kindAPNsServiceUnavailable:   {503, "ServiceUnavailable", "503 ServiceUnavailable", true, false},

	kindFCMInvalidArgument: {400, "INVALID_ARGUMENT", "400 INVALID_ARGUMENT", false, true},
	kindFCMUnauthenticated: {401, "UNAUTHENTICATED", "401 UNAUTHENTICATED", false, true},
	kindFCMThirdPartyAuth:  {401, "THIRD_PARTY_AUTH_ERROR", "401 THIRD_PARTY_AUTH_ERROR", false, true},
	kindFCMUnregistered:    {404, "UNREGISTERED", "404 UNREGISTERED", false, true},
	kindFCMNotFound:        {404, "NOT_FOUND", "404 NOT_FOUND", false, true},
	kindFCMQuotaExceeded:   {429, "QUOTA_EXCEEDED", "429 QUOTA_EXCEEDED", false, true},
	kindFCMInternal:        {500, "INTERNAL", "500 INTERNAL", false, true},
	kindFCMUnavailable:     {503, "UNAVAILABLE", "503 UNAVAILABLE", false, true},
}

// Stats is a snapshot of what the simulator received since it was created
// or last Reset.
type Stats struct {
	APNs ProviderStats `json:"apns"`
	FCM  ProviderStats `json:"fcm"`
	// Tokens is the number of distinct device tokens seen (needs
	// Config.TrackTokens).
	Tokens int `json:"tokens"`
	// Duplicates is the number of tokens accepted more than once (needs
	// Config.TrackTokens).
	Duplicates int `json:"duplicates"`
	// RetryAfterIgnored is the number of requests for a token that came
	// before the Retry-After the simulator last answered for that token
	// had run out (needs Config.TrackTokens). A client that honours
	// Retry-After keeps it at 0.
	RetryAfterIgnored int `json:"retry_after_ignored"`
}

// ProviderStats counts the requests of one provider.
type ProviderStats struct {
	// Requests is every request that reached the provider's routes.
	Requests int64 `json:"requests"`
	// Accepted is the number of 200 answers to real sends (FCM
	// validate_only requests are not sends).
	Accepted int64 `json:"accepted"`
	// Results counts answers by "status reason", e.g. "200",
	// "410 Unregistered", "503 UNAVAILABLE", "200 validate_only", and
	// "canceled" when the client went away before the answer. Only
	// non-zero entries are present.
	Results map[string]int64 `json:"results"`
	// RetryAfterSent is the number of answers that carried Retry-After.
	RetryAfterSent int64 `json:"retry_after_sent"`
}

// Request is one request kept for inspection (Config.RecordLast).
type Request struct {
	Provider string      `json:"provider"`
	Token    string      `json:"token"`
	Header   http.Header `json:"header"`
	Body     []byte      `json:"body"`
	At       time.Time   `json:"at"`
}

// counters holds the counts of one provider. All fields are updated with
// atomics; the metric children are resolved once at start.
type counters struct {
	requests   atomic.Int64
	accepted   atomic.Int64
	retryAfter atomic.Int64
	results    [numKinds]atomic.Int64

	mRequests   [numKinds]prometheus.Counter
	mRetryAfter prometheus.Counter
}

// tokenShards spreads the per-token map over independent locks.
const tokenShards = 64

type tokenCount struct {
	received, accepted int64
	// notBefore is when the Retry-After last sent for the token ends.
	notBefore time.Time
}

type tokenShard struct {
	mu sync.Mutex
	m  map[string]tokenCount
	_  [40]byte // keep shards on separate cache lines
}

// tokenTable counts requests per token.
type tokenTable struct {
	seed       maphash.Seed
	shards     [tokenShards]tokenShard
	distinct   atomic.Int64
	duplicates atomic.Int64
	early      atomic.Int64 // requests that came before their Retry-After ended
}

func (t *tokenTable) init() {
	t.seed = maphash.MakeSeed()
	for i := range t.shards {
		t.shards[i].m = make(map[string]tokenCount)
	}
}

func (t *tokenTable) shard(token string) *tokenShard {
	return &t.shards[maphash.String(t.seed, token)%tokenShards]
}

// add counts one request for token, accepted or not, answered at now
// with a Retry-After of wait (0: none).
func (t *tokenTable) add(token string, accepted bool, now time.Time, wait time.Duration) {
	sh := t.shard(token)
	sh.mu.Lock()
	c, ok := sh.m[token]
	if !ok {
		token = strings.Clone(token) // do not keep the request's URL alive
		t.distinct.Add(1)
	}
	if now.Before(c.notBefore) {
		t.early.Add(1)
	}
	if wait > 0 {
		c.notBefore = now.Add(wait)
	}
	c.received++
	if accepted {
		c.accepted++
		if c.accepted == 2 {
			t.duplicates.Add(1)
		}
	}
	sh.m[token] = c
	sh.mu.Unlock()
}

func (t *tokenTable) get(token string) tokenCount {
	sh := t.shard(token)
	sh.mu.Lock()
	c := sh.m[token]
	sh.mu.Unlock()
	return c
}

func (t *tokenTable) accepted() map[string]int {
	out := make(map[string]int)
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for k, c := range sh.m {
			if c.accepted > 0 {
				out[k] = int(c.accepted)
			}
		}
		sh.mu.Unlock()
	}
	return out
}

func (t *tokenTable) reset() {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
	t.distinct.Store(0)
	t.duplicates.Store(0)
	t.early.Store(0)
}

// recorder keeps the last n requests of a provider in a ring.
type recorder struct {
	mu   sync.Mutex
	buf  []Request
	next int
	full bool
}

func (r *recorder) add(req Request, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n <= 0 {
		return
	}
	if len(r.buf) != n {
		r.resize(n)
	}
	r.buf[r.next] = req
	r.next++
	if r.next == n {
		r.next, r.full = 0, true
	}
}

// resize keeps the newest entries that fit in n. Call with mu held.
func (r *recorder) resize(n int) {
	old := r.snapshot()
	if len(old) > n {
		old = old[len(old)-n:]
	}
	r.buf = make([]Request, n)
	copy(r.buf, old)
	r.next, r.full = len(old)%n, len(old) == n
}

// snapshot returns the entries oldest first. Call with mu held.
func (r *recorder) snapshot() []Request {
	if !r.full {
		return append([]Request(nil), r.buf[:r.next]...)
	}
	out := make([]Request, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}

// setSize keeps at most n entries from now on, dropping the oldest.
func (r *recorder) setSize(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case n <= 0:
		r.buf, r.next, r.full = nil, 0, false
	case len(r.buf) != 0 && len(r.buf) != n:
		r.resize(n)
	}
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.buf, r.next, r.full = nil, 0, false
	r.mu.Unlock()
}

// waiter is one WaitAccepted call.
type waiter struct {
	n    int64
	done chan struct{}
}

// metrics are the simulator's Prometheus collectors.
type metrics struct {
	requests     *prometheus.CounterVec
	retryAfter   *prometheus.CounterVec
	tokensIssued prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsim_requests_total",
			Help: "Requests answered by the simulator, by provider, HTTP status code and result (ok, a provider reason, or canceled).",
		}, []string{"provider", "code", "result"}),
		retryAfter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushsim_retry_after_sent_total",
			Help: "Answers that carried a Retry-After header, by provider.",
		}, []string{"provider"}),
		tokensIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushsim_oauth_tokens_issued_total",
			Help: "OAuth2 access tokens issued by the simulated Google token endpoint.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.retryAfter, m.tokensIssued} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// bind resolves the metric children of provider p into c, so counting a
// request touches no label map.
func (m *metrics) bind(c *counters, p provider) {
	for k := range numKinds {
		info := &kinds[k]
		if (p == provAPNs && !info.apns) || (p == provFCM && !info.fcm) {
			continue
		}
		code, result := "none", info.reason
		if info.status != 0 {
			code = strconv.Itoa(info.status)
		}
		switch k {
		case kindOK:
			result = "ok"
		case kindDryRun:
			result = "validate_only"
		}
		c.mRequests[k] = m.requests.WithLabelValues(p.String(), code, result)
	}
	c.mRetryAfter = m.retryAfter.WithLabelValues(p.String())
}

// count records the answer k to one request of provider p for token
// ("" when there is no device token).
func (s *Server) count(p provider, k kind, token string, retryAfter bool, st *state) {
	c := &s.counters[p]
	c.requests.Add(1)
	c.results[k].Add(1)
	if m := c.mRequests[k]; m != nil {
		m.Inc()
	}
	if retryAfter {
		c.retryAfter.Add(1)
		c.mRetryAfter.Inc()
	}
	ok := k == kindOK
	if st.cfg.TrackTokens && token != "" {
		var wait time.Duration
		if retryAfter {
			wait = st.retryWait
		}
		s.tokens.add(token, ok, time.Now(), wait)
	}
	if ok {
		c.accepted.Add(1)
		if s.nWaiters.Load() > 0 {
			s.wake()
		}
	}
}

// record keeps a copy of the request when Config.RecordLast asks for it.
func (s *Server) record(p provider, r *http.Request, token string, body []byte, st *state) {
	n := st.cfg.RecordLast
	if n <= 0 {
		return
	}
	s.recorders[p].add(Request{
		Provider: p.String(),
		Token:    strings.Clone(token),
		Header:   r.Header.Clone(),
		Body:     append([]byte(nil), body...),
		At:       time.Now(),
	}, n)
}

func (s *Server) acceptedTotal() int64 {
	return s.counters[provAPNs].accepted.Load() + s.counters[provFCM].accepted.Load()
}

// wake releases the waiters whose target is reached.
func (s *Server) wake() {
	total := s.acceptedTotal()
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	for w := range s.waiters {
		if total >= w.n {
			close(w.done)
			delete(s.waiters, w)
			s.nWaiters.Add(-1)
		}
	}
}

// WaitAccepted blocks until the simulator has accepted (answered 200 to) at
// least n sends in total, APNs and FCM together, or ctx is done, in which
// case it returns ctx.Err().
func (s *Server) WaitAccepted(ctx context.Context, n int) error {
	target := int64(n)
	if s.acceptedTotal() >= target {
		return nil
	}
	w := &waiter{n: target, done: make(chan struct{})}
	s.waitMu.Lock()
	s.waiters[w] = struct{}{}
	s.nWaiters.Add(1)
	s.waitMu.Unlock()
	// An accept may have happened between the check and the registration.
	s.wake()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		s.waitMu.Lock()
		if _, ok := s.waiters[w]; ok {
			delete(s.waiters, w)
			s.nWaiters.Add(-1)
		}
		s.waitMu.Unlock()
		select {
		case <-w.done: // reached at the same time: report success
			return nil
		default:
		}
		return ctx.Err()
	}
}

// Stats returns a snapshot of the counts.
func (s *Server) Stats() Stats {
	return Stats{
		APNs:       s.providerStats(provAPNs),
		FCM:        s.providerStats(provFCM),
		Tokens:     int(s.tokens.distinct.Load()),
		Duplicates: int(s.tokens.duplicates.Load()),

		RetryAfterIgnored: int(s.tokens.early.Load()),
	}
}

func (s *Server) providerStats(p provider) ProviderStats {
	c := &s.counters[p]
	ps := ProviderStats{
		Requests:       c.requests.Load(),
		Accepted:       c.accepted.Load(),
		RetryAfterSent: c.retryAfter.Load(),
		Results:        make(map[string]int64),
	}
	for k := range numKinds {
		if v := c.results[k].Load(); v != 0 {
			ps.Results[kinds[k].key] = v
		}
	}
	return ps
}

// Count returns the number of requests received for token, whatever their
// answer. It needs Config.TrackTokens; without it, it returns 0.
func (s *Server) Count(token string) int {
	return int(s.tokens.get(token).received)
}

// Tokens returns a copy of the per-token counts of accepted (200) sends. It
// needs Config.TrackTokens.
func (s *Server) Tokens() map[string]int {
	return s.tokens.accepted()
}

// Recorded returns the last Config.RecordLast requests of provider ("apns"
// or "fcm"), oldest first; nil for an unknown provider.
func (s *Server) Recorded(provider string) []Request {
	var r *recorder
	switch provider {
	case APNs:
		r = &s.recorders[provAPNs]
	case FCM:
		r = &s.recorders[provFCM]
	default:
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshot()
}

// Reset zeroes all counts, token counts and recorded requests. Prometheus
// counters, being counters, are not reset; issued OAuth2 tokens stay valid.
func (s *Server) Reset() {
	for p := range s.counters {
		c := &s.counters[p]
		c.requests.Store(0)
		c.accepted.Store(0)
		c.retryAfter.Store(0)
		for k := range c.results {
			c.results[k].Store(0)
		}
	}
	s.tokens.reset()
	for p := range s.recorders {
		s.recorders[p].reset()
	}
}
