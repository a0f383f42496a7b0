package dispatcher

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeBatch checks that DecodeBatch never panics; that what it
// accepts keeps the pushd.batch/v1 invariants and survives a round trip
// through json.Marshal (same batch, and the same bytes when encoded again);
// and that what it refuses comes back as a nil batch and an error of one of
// the documented kinds. Seeds beyond these are in
// testdata/fuzz/FuzzDecodeBatch.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		validBatch,
		`{"schema":"pushd.batch/v1","batch_id":"b-1","campaign":{"id":"c"},"notification":{"body":"hi"},"recipients":[{"platform":"android","token":"fcm:x"}]}`,
		`{"schema":"pushd.batch/v1","batch_id":"flash/1","campaign":{"id":"flash","rate_per_second":0.5},` +
			`"notification":{"title":"Vente flash ⚡","data":{"url":"app://flash","ids":[1,2.5e3,-0],"nested":{"a":"<b>&</b>\u2028"}},` +
			`"badge":0,"sound":"default","priority":"high","ttl_seconds":0,"apns":{"push_type":"alert"}},` +
			`"recipients":[{"platform":"IOS","token":"` + iosToken + `"},{"platform":"windows","token":""}],` +
			`"not_before":"2026-01-01T00:00:00.123456789Z","expires_at":"2026-01-01T01:00:00+01:30"}`,
		`{"schema":"pushd.batch/v1","batch_id":"b","campaign":{"id":"c"},"notification":{"title":"T"},"recipients":[{"platform":"ios","token":"t"}`,
		`{"schema":"pushd.batch/v2","batch_id":"b","campaign":{"id":"c"},"notification":{"title":"T"},"recipients":[{"platform":"ios","token":"t"}]}`,
		`{"schema":"pushd.batch/v1","batch_id":"b","campaign":{"id":"c"},"notification":{},"recipients":[{"platform":"ios","token":"t"}]}`,
		``,
		` `,
		`null`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := DecodeBatch(body)
		if err != nil {
			if b != nil {
				t.Fatalf("batch %+v returned with error %v", b, err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSchema) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v is none of ErrMalformed, ErrSchema, ErrTooLarge", err)
			}
			return
		}
		if b == nil {
			t.Fatal("nil batch and nil error")
		}
		checkBatchInvariants(t, b)

		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("json.Marshal of an accepted batch: %v", err)
		}
		again, err := DecodeBatch(enc)
		if err != nil {
			t.Fatalf("decoding the re-encoded batch %s: %v", enc, err)
		}
		if diff := batchDiff(b, again); diff != "" {
			t.Fatalf("round trip changed the batch: %s\nencoded: %s", diff, enc)
		}
		enc2, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("json.Marshal after the round trip: %v", err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// checkBatchInvariants fails t unless b keeps what DecodeBatch promises,
// checked here without calling validate.
func checkBatchInvariants(t *testing.T, b *Batch) {
	t.Helper()
	if b.Schema != Schema {
		t.Fatalf("schema %q accepted", b.Schema)
	}
	for field, id := range map[string]string{"batch_id": b.BatchID, "campaign.id": b.Campaign.ID} {
		if id == "" || len(id) > MaxIDLength {
			t.Fatalf("%s %q accepted (%d bytes)", field, id, len(id))
		}
		if strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("%s %q with a control character accepted", field, id)
		}
	}
	if b.Campaign.RatePerSecond < 0 {
		t.Fatalf("negative rate %v accepted", b.Campaign.RatePerSecond)
	}
	if n := len(b.Recipients); n < 1 || n > MaxRecipients {
		t.Fatalf("%d recipients accepted", n)
	}
	n := &b.Notification
	if n.Title == "" && n.Body == "" && len(n.Data) == 0 && n.Badge == nil && n.Sound == "" {
		t.Fatal("empty notification accepted")
	}
	if n.Priority != "" && n.Priority != "high" && n.Priority != "normal" {
		t.Fatalf("priority %q accepted", n.Priority)
	}
	if n.Badge != nil && *n.Badge < 0 || n.TTLSeconds != nil && *n.TTLSeconds < 0 {
		t.Fatalf("negative badge or ttl accepted: %v, %v", n.Badge, n.TTLSeconds)
	}
	if ttl, ok := n.TTL(); ok && ttl < 0 {
		t.Fatalf("ttl_seconds %d gives a negative TTL %v", *n.TTLSeconds, ttl)
	}
	if len(n.CollapseKey) > 64 {
		t.Fatalf("collapse key of %d bytes accepted", len(n.CollapseKey))
	}
	if pt := n.APNs.PushType; pt != "" && !apnsPushTypes[pt] {
		t.Fatalf("push type %q accepted", pt)
	}
	for k, v := range n.Data {
		if k == "" || k == "aps" {
			t.Fatalf("data key %q accepted", k)
		}
		if !json.Valid(v) || string(v) == "null" {
			t.Fatalf("data value %q for %q accepted", v, k)
		}
	}
	if b.NotBefore != nil && b.ExpiresAt != nil && !b.ExpiresAt.After(*b.NotBefore) {
		t.Fatalf("expires_at %v not after not_before %v", b.ExpiresAt, b.NotBefore)
	}
}

// batchDiff describes how b2 differs from b1, or returns "". Data values
// are compared as JSON values (json.Marshal compacts them and escapes <, >,
// &, U+2028, U+2029; an empty data object is omitted), times as instants with
// their UTC offset (a zone of offset 0 may come back as UTC), the rest with
// reflect.DeepEqual.
func batchDiff(b1, b2 *Batch) string {
	c1, c2 := *b1, *b2
	if len(c1.Notification.Data) != len(c2.Notification.Data) {
		return "data keys differ"
	}
	for k, v1 := range c1.Notification.Data {
		v2, ok := c2.Notification.Data[k]
		if !ok {
			return "data key " + k + " lost"
		}
		if !reflect.DeepEqual(jsonValue(v1), jsonValue(v2)) {
			return "data value of " + k + ": " + string(v1) + " became " + string(v2)
		}
	}
	c1.Notification.Data, c2.Notification.Data = nil, nil
	for name, p := range map[string][2]*time.Time{"not_before": {c1.NotBefore, c2.NotBefore}, "expires_at": {c1.ExpiresAt, c2.ExpiresAt}} {
		if !sameTime(p[0], p[1]) {
			return name + " differs"
		}
	}
	c1.NotBefore, c2.NotBefore, c1.ExpiresAt, c2.ExpiresAt = nil, nil, nil, nil
	if !reflect.DeepEqual(c1, c2) {
		return "fields differ"
	}
	return ""
}

// jsonValue decodes a valid JSON value, numbers kept as written.
func jsonValue(raw json.RawMessage) any {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return err.Error()
	}
	return v
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	_, oa := a.Zone()
	_, ob := b.Zone()
	return a.Equal(*b) && oa == ob
}
