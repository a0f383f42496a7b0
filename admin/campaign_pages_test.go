package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// pageOf decodes an answer of GET /api/campaigns into its ids and next.
func pageOf(t *testing.T, b *bundle, query string) (ids []string, next string) {
	t.Helper()
	w := b.do(t, request{method: "GET", path: "/api/campaigns" + query, token: viewerToken})
	if w.Code != 200 {
		t.Fatalf("GET /api/campaigns%s: %d %s", query, w.Code, w.Body)
	}
	// Only the two fields, whatever each campaign holds.
	body := w.Body.Bytes()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var shape struct {
		Campaigns []json.RawMessage `json:"campaigns"`
		Next      string            `json:"next"`
	}
	if err := dec.Decode(&shape); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	var page campaignList
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	if page.Campaigns == nil {
		t.Fatalf("campaigns is null, want a list: %s", w.Body)
	}
	for _, c := range page.Campaigns {
		ids = append(ids, c.ID)
	}
	return ids, page.Next
}

// TestCampaignPaging: GET /api/campaigns gives limit campaigns at a
// time, newest first (then by id), and a next cursor until the last
// page; following it gives every campaign once, even when campaigns are
// created meanwhile (issue 13, item 13).
func TestCampaignPaging(t *testing.T) {
	var mu sync.Mutex
	var cs []dispatcher.CampaignInfo
	add := func(id string, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		c := campaignBase
		c.ID, c.CreatedAt = id, at
		cs = append(cs, c)
	}
	// 250 campaigns, three at each creation time.
	for i := range 250 {
		add(fmt.Sprintf("c-%03d", i), t0.Add(time.Duration(i/3)*time.Minute))
	}
	b := setup(t, setupOpts{adjust: func(b *bundle) {
		b.ctl.CampaignsFn = func(context.Context) ([]dispatcher.CampaignInfo, error) {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(cs), nil
		}
	}})
	var want []string // newest first, then by id
	for g := 249 / 3; g >= 0; g-- {
		for i := 3 * g; i < min(3*g+3, 250); i++ {
			want = append(want, fmt.Sprintf("c-%03d", i))
		}
	}

	// The default page is 100.
	first, next := pageOf(t, b, "")
	if !slices.Equal(first, want[:100]) || next == "" {
		t.Fatalf("first page %v... (%d), next %q; want %v...", first[:3], len(first), next, want[:3])
	}
	// A campaign created while a client pages shows on the first page,
	// not on the next ones.
	add("c-new", t0.Add(time.Hour*24))
	var got []string
	got = append(got, first...)
	pages := 1
	for next != "" {
		var ids []string
		ids, next = pageOf(t, b, "?limit=70&after="+url.QueryEscape(next))
		got = append(got, ids...)
		pages++
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged through %d campaigns in %d pages; want the %d once each in order", len(got), pages, len(want))
	}
	if pages != 4 { // 100, 70, 70, 10
		t.Errorf("%d pages, want 4", pages)
	}
	if ids, _ := pageOf(t, b, "?limit=1"); !slices.Equal(ids, []string{"c-new"}) {
		t.Errorf("newest first: %v", ids)
	}
	// A full last page has no next: 251 in pages of 251.
	if ids, next := pageOf(t, b, "?limit=251"); len(ids) != 251 || next != "" {
		t.Errorf("one page of all: %d, next %q", len(ids), next)
	}

	// "e30" is "{}": a cursor that names no campaign.
	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x", "?after=nope", "?after=e30"} {
		if w := b.do(t, request{method: "GET", path: "/api/campaigns" + q, token: viewerToken}); w.Code != 400 {
			t.Errorf("GET /api/campaigns%s: %d %s, want 400", q, w.Code, w.Body)
		}
	}
	if !strings.Contains(b.do(t, request{method: "GET", path: "/api/campaigns?limit=0", token: viewerToken}).Body.String(), "limit") {
		t.Error("a bad limit is not named")
	}
}
