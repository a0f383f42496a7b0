package admin

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestCheckKeys(t *testing.T) {
	tests := []struct {
		name    string
		v       any
		body    string
		wantErr string
	}{
		{name: "exact", v: &limitRequest{}, body: `{"per_second": 1, "burst": 2}`},
		{name: "duplicate", v: &limitRequest{}, body: `{"per_second": 1, "per_second": 1000}`, wantErr: `"per_second": duplicate key`},
		{name: "case-folded", v: &limitRequest{}, body: `{"Per_Second": 1}`, wantErr: `"Per_Second": unknown field; names are case-sensitive: "per_second"`},
		{name: "Kelvin sign folds to k", v: &addRequest{}, body: `{"\u212aind": "token"}`, wantErr: "case-sensitive"},
		{name: "embedded struct's field, case-folded", v: &addRequest{}, body: `{"VALUE": "x"}`, wantErr: `"VALUE": unknown field; names are case-sensitive: "value"`},
		{name: "in a list", v: &addRequest{}, body: `{"entries": [{"kind": "token"}, {"kind": "token", "Platform": "ios"}]}`, wantErr: `"entries"[1]."Platform"`},
		{name: "duplicate in a list", v: &removeRequest{}, body: `{"entries": [{"value": "a", "value": "b"}]}`, wantErr: "duplicate"},
		{name: "duplicate inside a raw message", v: &campaignRequest{}, body: `{"notification": {"title": "a", "data": {"k": 1, "k": 2}}}`, wantErr: `"notification"."data"."k": duplicate key`},
		{name: "raw message's keys are its own business", v: &campaignRequest{}, body: `{"notification": {"Title": "a"}}`},
		{name: "a map's keys", v: &map[string]int{}, body: `{"a": 1, "A": 2}`},
		{name: "a map's duplicate keys", v: &map[string]int{}, body: `{"a": 1, "a": 2}`, wantErr: "duplicate"},
		{name: "the same key in two objects", v: &addRequest{}, body: `{"entries": [{"kind": "token"}, {"kind": "user"}]}`},
		{name: "scalars", v: new(int), body: `7`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := json.Unmarshal([]byte(tc.body), tc.v); err != nil {
				t.Fatalf("encoding/json refuses the body: %v", err)
			}
			err := checkKeys([]byte(tc.body), reflect.TypeOf(tc.v))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if status, _ := errorStatus(err); status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", status)
			}
		})
	}
}

// TestJSONRoutesRequireJSON checks decodeJSON through a route: bodies
// declared as anything but JSON get 415, duplicate and case-folded keys
// 400, and nothing changes.
func TestJSONRoutesRequireJSON(t *testing.T) {
	b := setup(t, setupOpts{})
	for _, tc := range []struct {
		name, contentType, body string
		want                    int
		wantError               string
	}{
		{"JSON", "application/json", `{"rate_per_second": 5}`, 200, ""},
		{"JSON with a charset", "application/json; charset=utf-8", `{"rate_per_second": 5}`, 200, ""},
		{"text/plain (a cross-site form may send it)", "text/plain", `{"rate_per_second": 1}`, 415, "Content-Type must be application/json"},
		{"a form", "application/x-www-form-urlencoded", `{"rate_per_second": 1}`, 415, "application/json"},
		{"multipart", "multipart/form-data; boundary=x", `{"rate_per_second": 1}`, 415, "application/json"},
		{"no Content-Type", "-", `{"rate_per_second": 1}`, 415, "application/json"},
		{"a JSON-like type", "application/json-patch+json", `{"rate_per_second": 1}`, 415, "application/json"},
		{"duplicate key", "application/json", `{"rate_per_second": 1, "rate_per_second": 1000}`, 400, "duplicate key"},
		{"case-folded key", "application/json", `{"RATE_PER_SECOND": 1}`, 400, "case-sensitive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Content-Type": tc.contentType}
			if tc.contentType == "-" {
				h["Content-Type"] = ""
			}
			w := b.do(t, request{method: "PUT", path: "/api/campaigns/a%2Fb%20c%25d/rate", token: operatorToken, body: tc.body, header: h})
			if w.Code != tc.want {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.want)
			}
			if tc.want == 200 {
				return
			}
			if msg := errorOf(t, w); !strings.Contains(msg, tc.wantError) {
				t.Errorf("error %q, want %q", msg, tc.wantError)
			}
			if c, _ := b.ctl.Campaign(t.Context(), "a/b c%d"); c.RatePerSecond != 5 || c.RateSource != "operator" {
				t.Errorf("a refused body changed the campaign: %+v", c)
			}
		})
	}
}

// FuzzCheckKeys checks the key walk on any body encoding/json accepts:
// it never panics, and it refuses only what it should.
func FuzzCheckKeys(f *testing.F) {
	f.Add([]byte(`{"entries": [{"kind": "token", "value": "a", "platform": "ios"}]}`))
	f.Add([]byte(`{"kind": "user", "value": "u", "Kind": "x"}`))
	f.Add([]byte(`{"entries": [{"value": "a", "value": "b"}], "reason": ""}`))
	f.Add([]byte(`{"notification": {"data": {"k": [1, {"x": null}]}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&addRequest{}, &campaignRequest{}} {
			if json.Unmarshal(body, v) != nil {
				continue
			}
			err := checkKeys(body, reflect.TypeOf(v))
			if err != nil && !strings.Contains(err.Error(), "duplicate key") && !strings.Contains(err.Error(), "case-sensitive") {
				t.Fatalf("%T: refused %q for another reason: %v", v, body, err)
			}
			if err == nil {
				var m any
				if json.Unmarshal(body, &m) == nil && hasDuplicate(body) {
					t.Fatalf("%T: accepted %q, which has a duplicate key", v, body)
				}
			}
		}
	})
}

// hasDuplicate reports whether some object of body has a key twice, by a
// walk of its own over generic values.
func hasDuplicate(body []byte) bool {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	var walk func() bool
	walk = func() bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			dup := false
			for dec.More() {
				k, _ := dec.Token()
				ks, _ := k.(string)
				dup = dup || seen[ks]
				seen[ks] = true
				dup = walk() || dup
			}
			_, _ = dec.Token()
			return dup
		case json.Delim('['):
			dup := false
			for dec.More() {
				dup = walk() || dup
			}
			_, _ = dec.Token()
			return dup
		}
		return false
	}
	return walk()
}
