package main

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/pushd/pushd/push/sim"
)

// TestConsoleCampaignThroughTheAPI creates, schedules and cancels a
// console campaign through pushd's admin API, and reads its audit.
func TestConsoleCampaignThroughTheAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	// A ready audience, as an import leaves it.
	db, err := sql.Open("sqlite", "file:"+h.env["PUSHD_STORE_DSN"]+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO audiences (id, name, state, zones, created_at, created_by) VALUES ('aud', 'aud', 'ready', '', 0, 'test')`)
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}

	type view struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Source string `json:"source"`
	}
	var v view
	body := map[string]any{"id": "xmas", "notification": map[string]any{"title": "Hi 🎄"}, "audience": "aud",
		"send_at": "2099-12-24T09:00", "time_zone": "Asia/Seoul"}
	if got := h.api(d, "POST", "/api/campaigns", operatorToken, body, &v); got != 201 || v.Status != "draft" || v.Source != "console" {
		t.Fatalf("create: %d %+v", got, v)
	}
	if got := h.api(d, "POST", "/api/campaigns", viewerToken, body, nil); got != 403 {
		t.Errorf("viewer create: %d", got)
	}
	if got := h.api(d, "POST", "/api/campaigns/xmas/schedule", operatorToken, nil, &v); got != 200 || v.Status != "scheduled" {
		t.Fatalf("schedule: %d %+v", got, v)
	}
	var list struct {
		Campaigns []view `json:"campaigns"`
	}
	h.api(d, "GET", "/api/campaigns", viewerToken, nil, &list)
	if len(list.Campaigns) != 1 || list.Campaigns[0] != (view{"xmas", "scheduled", "console"}) {
		t.Errorf("list %+v", list)
	}
	if got := h.api(d, "POST", "/api/campaigns/xmas/cancel", operatorToken, nil, &v); got != 200 || v.Status != "cancelled" {
		t.Errorf("cancel: %d %+v", got, v)
	}
	var audit struct {
		Entries []struct {
			Action string `json:"action"`
		} `json:"entries"`
	}
	if got := h.api(d, "GET", "/api/audit?target=xmas", operatorToken, nil, &audit); got != 200 {
		t.Fatalf("audit: %d", got)
	}
	var actions []string
	for _, e := range audit.Entries {
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, " "); got != "campaign.cancel campaign.schedule campaign.create" {
		t.Errorf("audit actions %q", got)
	}
	if got := h.api(d, "GET", "/api/audit", viewerToken, nil, nil); got != 403 {
		t.Errorf("viewer audit: %d", got)
	}
}
