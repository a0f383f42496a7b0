package queue

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// headerSeal carries an HMAC that makes pushd's own headers trustworthy.
// Producers can set any header, and three of pushd's change what happens to
// a message before it is validated: x-pushd-key (a reused key would make
// the ledger skip another batch's recipients), x-pushd-attempt (a message
// with one is not counted as received) and x-pushd-hold-until (a far one
// would park a batch for ever). pushd seals them, with the body they
// belong to, under a key every instance shares (from the store); on
// consume, headers without a valid seal are ignored, as if a producer had
// published the body alone.
const headerSeal = "x-pushd-seal"

// maxHold bounds a sealed hold-until. pushd's own holds (retry backoff,
// Retry-After, not_before) may be longer, but a hold is only an early
// release's guard: a message released with none is decoded and validated,
// and held again for its not_before, so dropping a longer one loses
// nothing, and a broken clock or a replayed message cannot park a batch
// for longer than this.
const maxHold = 36 * time.Hour

// sealer signs and checks pushd's headers. Its zero value is not usable:
// see newSealer.
type sealer struct {
	key []byte
	log func(msg string, args ...any)

	mu     sync.Mutex
	warned time.Time // last warning about unsealed headers
	since  int       // messages with unsealed headers since then
}

// newSealer returns a sealer with key, or with a random key of its own
// when key is empty (a single instance, or tests): then only this process
// trusts the headers it wrote.
func newSealer(key []byte, log func(msg string, args ...any)) *sealer {
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	return &sealer{key: key, log: log}
}

// mac is the seal of the trusted headers' values and the body.
func (s *sealer) mac(attempt int64, key string, holdUntil int64, body []byte) string {
	m := hmac.New(sha256.New, s.key)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(attempt))
	m.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(len(key)))
	m.Write(n[:])
	m.Write([]byte(key))
	binary.BigEndian.PutUint64(n[:], uint64(holdUntil))
	m.Write(n[:])
	sum := sha256.Sum256(body)
	m.Write(sum[:])
	return hex.EncodeToString(m.Sum(nil))
}

// seal adds the seal of h's trusted headers and body to h.
func (s *sealer) seal(h amqp.Table, body []byte) {
	attempt, _ := intHeader(h[HeaderAttempt])
	key, _ := h[HeaderKey].(string)
	hold, _ := intHeader(h[HeaderHoldUntil])
	h[headerSeal] = s.mac(attempt, key, hold, body)
}

// trusted is what the trusted headers of a message say, once checked.
type trusted struct {
	attempt     int64
	republished bool // pushd published it (it carries an attempt)
	key         string
	holdUntil   time.Time
}

// open returns the trusted headers of a delivery: their values when the
// seal matches, nothing when they are absent, and nothing (with a warning
// now and then) when they are there unsealed or the seal is wrong.
func (s *sealer) open(h amqp.Table, body []byte, now time.Time) trusted {
	attempt, hasAttempt := intHeader(h[HeaderAttempt])
	key, hasKey := h[HeaderKey].(string)
	hold, hasHold := intHeader(h[HeaderHoldUntil])
	if !hasAttempt && !hasKey && !hasHold {
		return trusted{}
	}
	got, _ := h[headerSeal].(string)
	if !hmac.Equal([]byte(got), []byte(s.mac(attempt, key, hold, body))) {
		s.warn(now)
		return trusted{}
	}
	t := trusted{attempt: attempt, republished: hasAttempt, key: key}
	if at := time.UnixMilli(hold); hasHold && hold > 0 && at.Before(now.Add(maxHold)) {
		t.holdUntil = at
	}
	return t
}

// warn logs unsealed headers at most once a minute, with how many
// messages had them.
func (s *sealer) warn(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.since++
	if now.Sub(s.warned) < time.Minute {
		return
	}
	s.log("messages carried x-pushd-attempt, x-pushd-key or x-pushd-hold-until without pushd's seal; those headers were ignored (a producer may not set them)",
		"messages", s.since)
	s.warned, s.since = now, 0
}
