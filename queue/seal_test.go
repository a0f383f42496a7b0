package queue

import (
	"bytes"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func testSealer(t *testing.T) (*sealer, *strings.Builder) {
	var logs strings.Builder
	return newSealer([]byte("0123456789abcdef0123456789abcdef"), func(msg string, _ ...any) { logs.WriteString(msg + "\n") }), &logs
}

func TestSealedHeadersAreTrusted(t *testing.T) {
	s, logs := testSealer(t)
	now := time.UnixMilli(1_800_000_000_000)
	body := []byte(`{"batch_id":"b"}`)
	h := amqp.Table{HeaderAttempt: int32(2), HeaderKey: "k-1", HeaderHoldUntil: now.Add(time.Hour).UnixMilli()}
	s.seal(h, body)
	got := s.open(h, body, now)
	if got.attempt != 2 || !got.republished || got.key != "k-1" || !got.holdUntil.Equal(now.Add(time.Hour)) {
		t.Errorf("sealed headers opened as %+v", got)
	}
	// The header types the broker hands back may differ from the ones
	// published; the seal is over the values.
	h[HeaderAttempt] = int64(2)
	if got := s.open(h, body, now); got.attempt != 2 {
		t.Errorf("attempt as int64: %+v", got)
	}
	if logs.Len() != 0 {
		t.Errorf("warned about sealed headers: %s", logs)
	}
	// Another instance with the same key trusts them; one with another
	// key does not.
	other := newSealer([]byte("0123456789abcdef0123456789abcdef"), t.Logf)
	if got := other.open(h, body, now); got.key != "k-1" {
		t.Errorf("same key, other sealer: %+v", got)
	}
	if got := newSealer(nil, t.Logf).open(h, body, now); got != (trusted{}) {
		t.Errorf("other key: %+v", got)
	}
}

func TestProducersHeadersAreIgnored(t *testing.T) {
	s, logs := testSealer(t)
	now := time.UnixMilli(1_800_000_000_000)
	body := []byte(`{"batch_id":"b"}`)
	sealed := amqp.Table{HeaderAttempt: int32(1), HeaderKey: "k-1"}
	s.seal(sealed, body)
	for name, h := range map[string]amqp.Table{
		"attempt, no seal":       {HeaderAttempt: int32(3)},
		"key, no seal":           {HeaderKey: "someone-elses-key"},
		"hold-until, no seal":    {HeaderHoldUntil: now.Add(100 * 365 * 24 * time.Hour).UnixMilli()},
		"seal of another body":   sealed,
		"key changed":            {HeaderAttempt: int32(1), HeaderKey: "k-2", headerSeal: sealed[headerSeal]},
		"attempt changed":        {HeaderAttempt: int32(0), HeaderKey: "k-1", headerSeal: sealed[headerSeal]},
		"hold-until added":       {HeaderAttempt: int32(1), HeaderKey: "k-1", HeaderHoldUntil: now.Add(time.Hour).UnixMilli(), headerSeal: sealed[headerSeal]},
		"seal of the wrong type": {HeaderKey: "k-1", headerSeal: []byte("x")},
	} {
		b := body
		if name == "seal of another body" {
			b = []byte(`{"batch_id":"other"}`)
		}
		if got := s.open(h, b, now); got != (trusted{}) {
			t.Errorf("%s: trusted %+v", name, got)
		}
	}
	// Warned once a minute, not once a message.
	if n := strings.Count(logs.String(), "without pushd's seal"); n != 1 {
		t.Errorf("warned %d times, want once", n)
	}
	s.open(amqp.Table{HeaderKey: "x"}, body, now.Add(time.Minute))
	if n := strings.Count(logs.String(), "without pushd's seal"); n != 2 {
		t.Errorf("warned %d times a minute later, want twice", n)
	}
	// No headers at all: a producer's message, no warning.
	if got := s.open(amqp.Table{"x-other": "v"}, body, now.Add(2*time.Minute)); got != (trusted{}) || strings.Count(logs.String(), "seal") != 2 {
		t.Errorf("plain message: %+v, logs %s", got, logs)
	}
}

func TestSealedHoldUntilIsBounded(t *testing.T) {
	s, _ := testSealer(t)
	now := time.UnixMilli(1_800_000_000_000)
	body := []byte("b")
	for _, tc := range []struct {
		hold time.Duration
		kept bool
	}{{time.Minute, true}, {maxHold - time.Second, true}, {maxHold + time.Second, false}, {100 * 365 * 24 * time.Hour, false}} {
		h := amqp.Table{HeaderAttempt: int32(1), HeaderHoldUntil: now.Add(tc.hold).UnixMilli()}
		s.seal(h, body)
		got := s.open(h, body, now)
		if kept := !got.holdUntil.IsZero(); kept != tc.kept || got.attempt != 1 {
			t.Errorf("hold %v: %+v, kept %v, want %v", tc.hold, got, kept, tc.kept)
		}
	}
}

// FuzzSealedHeaders: whatever the headers and body, opening never panics;
// a seal opens to exactly what was sealed; and changing any byte of the
// body makes the headers untrusted.
func FuzzSealedHeaders(f *testing.F) {
	f.Add(int64(0), "", int64(0), []byte("{}"), byte(0))
	f.Add(int64(3), "k-1/r", int64(1_800_000_000_000), []byte(`{"batch_id":"b"}`), byte(1))
	f.Add(int64(-1), "\x00", int64(-5), []byte{}, byte(255))
	f.Fuzz(func(t *testing.T, attempt int64, key string, hold int64, body []byte, flip byte) {
		s := newSealer([]byte("fuzz-key-0123456789abcdef-012345"), func(string, ...any) {})
		now := time.UnixMilli(1_800_000_000_000)
		h := amqp.Table{HeaderAttempt: attempt, HeaderKey: key, HeaderHoldUntil: hold}
		s.seal(h, body)
		got := s.open(h, body, now)
		if got.attempt != attempt || got.key != key || !got.republished {
			t.Fatalf("sealed %d %q, opened %+v", attempt, key, got)
		}
		if at := time.UnixMilli(hold); hold > 0 && at.Before(now.Add(maxHold)) != !got.holdUntil.IsZero() {
			t.Fatalf("hold %d opened as %v", hold, got.holdUntil)
		}
		if len(body) > 0 {
			other := bytes.Clone(body)
			other[int(flip)%len(other)] ^= 1 + flip%255
			if got := s.open(h, other, now); got != (trusted{}) {
				t.Fatalf("a changed body kept its headers: %+v", got)
			}
		}
		// Unsealed copies of the same values are never trusted.
		delete(h, headerSeal)
		if got := s.open(h, body, now); got != (trusted{}) {
			t.Fatalf("unsealed: %+v", got)
		}
	})
}
