package main

// End-to-end tests of campaigns created in pushd (DESIGN.md, "Operator
// side"): audiences, drafts, test sends, approval, the scheduler, and
// the audit log, through the HTTP API only, against the real RabbitMQ and
// the simulator.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
)

const (
	adminToken     = "admin-secret-token-0123456789abcdef"
	operator2Token = "op2-secret-token-0123456789abcdef"
)

// withConsole is withAdmin with a second operator and an admin, so that
// approvals by a different user can be tested.
func (h *harness) withConsole() {
	h.t.Helper()
	h.withAdmin()
	file := h.env["PUSHD_ADMIN_TOKENS_FILE"]
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "operator:%s\nadmin:%s\n", operator2Token, adminToken); err != nil {
		h.t.Fatal(err)
	}
}

// consoleCampaign is what GET /api/campaigns/{id} answers about a campaign
// created in pushd.
type consoleCampaign struct {
	ID       string              `json:"id"`
	Status   string              `json:"status"`
	Source   string              `json:"source"`
	Counters dispatcher.Counters `json:"counters"`
	InFlight int64               `json:"in_flight"`
}

// call is api with a raw body and content type, answering the status and
// the body.
func (h *harness) call(d *daemon, method, path, token, contentType string, body io.Reader) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, "http://"+d.admin+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// must is api that fails the test unless the answer is want.
func (h *harness) must(d *daemon, want int, method, path, token string, body, out any) {
	h.t.Helper()
	var b io.Reader
	ct := ""
	if body != nil {
		j, _ := json.Marshal(body)
		b, ct = bytes.NewReader(j), "application/json"
	}
	code, got := h.call(d, method, path, token, ct, b)
	if code != want {
		h.t.Fatalf("%s %s: %d %s, want %d", method, path, code, got, want)
	}
	if out != nil {
		if err := json.Unmarshal(got, out); err != nil {
			h.t.Fatalf("%s %s: %v in %s", method, path, err, got)
		}
	}
}

// uploadAudience imports o's recipients as an audience, with the time
// zone zone(i) for recipient i (nil: no timezone column), and returns its
// id.
func (h *harness) uploadAudience(d *daemon, o synth.Options, zone func(i int) string) string {
	h.t.Helper()
	var csv strings.Builder
	csv.WriteString("platform,token,user_id")
	if zone != nil {
		csv.WriteString(",timezone")
	}
	csv.WriteString("\n")
	for i := range o.Recipients {
		r := o.Recipient(i)
		fmt.Fprintf(&csv, "%s,%s,%s", r.Platform, r.Token, r.UserID)
		if zone != nil {
			csv.WriteString("," + zone(i))
		}
		csv.WriteString("\n")
	}
	code, body := h.call(d, "POST", "/api/audiences?name="+o.Campaign, operatorToken, "text/csv", strings.NewReader(csv.String()))
	if code != http.StatusCreated {
		h.t.Fatalf("import audience: %d %s", code, body)
	}
	var a struct {
		ID         string `json:"id"`
		Recipients int    `json:"recipients"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.Recipients != o.Recipients {
		h.t.Fatalf("import audience: %s (%v), want %d recipients", body, err, o.Recipients)
	}
	return a.ID
}

// newCampaign creates a draft campaign for audience and returns its id.
func (h *harness) newCampaign(d *daemon, def map[string]any) string {
	h.t.Helper()
	if _, ok := def["notification"]; !ok {
		def["notification"] = map[string]any{"title": "Hello", "body": "안녕하세요 👋", "apns": map[string]any{"topic": "com.example.app"}}
	}
	var c consoleCampaign
	h.must(d, http.StatusCreated, "POST", "/api/campaigns", operatorToken, def, &c)
	if c.Status != "draft" || c.Source != "console" {
		h.t.Fatalf("created campaign %+v, want a console draft", c)
	}
	return c.ID
}

func (h *harness) consoleCampaign(d *daemon, id string) consoleCampaign {
	h.t.Helper()
	var c consoleCampaign
	h.must(d, http.StatusOK, "GET", "/api/campaigns/"+id, viewerToken, nil, &c)
	return c
}

// tap binds a queue of the test's own to the normal lane's routing key, so
// that it gets a copy of every batch published to that lane.
type tap struct {
	h    *harness
	name string
}

func (h *harness) tap() *tap {
	h.t.Helper()
	q, err := h.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.ch.QueueBind(q.Name, h.top.RoutingKey, h.top.Exchange, false, nil); err != nil {
		h.t.Fatal(err)
	}
	return &tap{h: h, name: q.Name}
}

// batches drains the tap and decodes what it holds.
func (tp *tap) batches() []*dispatcher.Batch {
	tp.h.t.Helper()
	var out []*dispatcher.Batch
	for {
		m, ok, err := tp.h.ch.Get(tp.name, true)
		if err != nil {
			tp.h.t.Fatal(err)
		}
		if !ok {
			return out
		}
		var b dispatcher.Batch
		if err := json.Unmarshal(m.Body, &b); err != nil {
			tp.h.t.Fatalf("tapped batch: %v", err)
		}
		if m.MessageId != b.BatchID {
			tp.h.t.Errorf("message_id %q, batch_id %q", m.MessageId, b.BatchID)
		}
		out = append(out, &b)
	}
}

// messages is how many messages the tap holds.
func (tp *tap) messages() int {
	q, err := tp.h.ch.QueueDeclarePassive(tp.name, false, true, true, false, nil)
	if err != nil {
		tp.h.t.Fatal(err)
	}
	return q.Messages
}

// publishedOnce checks that the tapped batches hold every recipient of o,
// each in one batch id only, and returns the batch ids published more than
// once (whole copies, under the same id).
func publishedOnce(t *testing.T, bs []*dispatcher.Batch, o synth.Options) (again []string) {
	t.Helper()
	inBatch := map[string]string{} // token -> batch id
	copies := map[string]int{}
	for _, b := range bs {
		if copies[b.BatchID]++; copies[b.BatchID] == 2 {
			again = append(again, b.BatchID)
		}
		for _, r := range b.Recipients {
			if id, ok := inBatch[r.Token]; ok && id != b.BatchID {
				t.Errorf("recipient %s in batches %s and %s", dispatcher.ShortToken(r.Token), id, b.BatchID)
			}
			inBatch[r.Token] = b.BatchID
		}
	}
	missing := 0
	for i := range o.Recipients {
		if _, ok := inBatch[o.Recipient(i).Token]; !ok {
			missing++
		}
	}
	if missing > 0 || len(inBatch) != o.Recipients {
		t.Errorf("published: %d recipients missing, %d distinct of %d", missing, len(inBatch), o.Recipients)
	}
	return again
}

// firstSend waits for the simulator's first accepted push and answers when
// it saw it.
func (h *harness) firstSend(within time.Duration) time.Time {
	h.t.Helper()
	var at time.Time
	testwait.For(h.t, within, "a first send", func() bool {
		if accepted(h.sim) > 0 {
			at = time.Now()
			return true
		}
		return false
	})
	return at
}

// Not parallel: Go runs the package's serial tests before its parallel
// ones, so this one has the machine to itself and its ±1 s bound on the
// first send measures pushd, not the other daemons of the package.
func TestScheduledCampaignFromAnAudienceFiresOnTimeAndFinishes(t *testing.T) {
	h := newHarness(t, sim.Config{})
	h.withConsole()
	d := h.start(nil)
	o := synth.Options{Campaign: "seoul-5000", Recipients: 5000, IOSPercent: 40}
	aud := h.uploadAudience(d, o, nil)
	seoul, _ := time.LoadLocation("Asia/Seoul")
	id := h.newCampaign(d, map[string]any{"id": "seoul-sale", "name": "Seoul sale", "audience": aud, "rate_per_second": 0})

	sendAt := time.Now().Add(5 * time.Second).In(seoul).Truncate(time.Second)
	h.must(d, http.StatusOK, "PUT", "/api/campaigns/"+id, operatorToken, map[string]any{
		"name": "Seoul sale", "audience": aud,
		"notification": map[string]any{"title": "Sale", "body": "세일 🎉", "apns": map[string]any{"topic": "com.example.app"}},
		"send_at":      sendAt.Format("2006-01-02T15:04:05"), "time_zone": "Asia/Seoul",
	}, nil)
	var sc consoleCampaign
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/schedule", operatorToken, nil, &sc)
	if sc.Status != "scheduled" {
		t.Fatalf("after schedule: %+v", sc)
	}
	if accepted(h.sim) != 0 {
		t.Fatal("sent before its time")
	}
	first := h.firstSend(30 * time.Second)
	late := first.Sub(sendAt)
	t.Logf("first send %v after send_at", late)
	if late < 0 {
		t.Errorf("first send %v before send_at", -late)
	}
	// The scheduler measures its own start against send_at, too.
	m := scrape(t, d.metrics)
	if n := m["pushd_scheduler_lateness_seconds_count"]; n != 1 {
		t.Fatalf("scheduler lateness observed %v times, want 1", n)
	}
	if m["pushd_scheduler_lateness_seconds_bucket{le=\"1\"}"] != 1 {
		t.Errorf("the scheduler started the campaign %.3fs after send_at, want ≤ 1s", m["pushd_scheduler_lateness_seconds_sum"])
	}
	if late > time.Second {
		t.Errorf("first send %v after send_at, want within 1s", late)
	}
	c := h.counted(d, id, 5000)
	if c.Received != 5000 || c.Sent != 5000 {
		t.Errorf("counters %+v, want 5000 received and sent", c)
	}
	if dups := h.delivered(o, true); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	testwait.For(t, 30*time.Second, "the campaign finished", func() bool { return h.consoleCampaign(d, id).Status == "finished" })
	var list struct{ Campaigns []consoleCampaign }
	h.must(d, http.StatusOK, "GET", "/api/campaigns", viewerToken, nil, &list)
	found := false
	for _, c := range list.Campaigns {
		found = found || (c.ID == id && c.Source == "console")
	}
	if !found {
		t.Errorf("campaign list %+v lacks %s with source console", list, id)
	}
	h.countersAddUp()
}

func TestTestSendReachesOnlyTheWhitelistAndLeavesTheCampaignAlone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	d := h.start(nil)
	o := synth.Options{Campaign: "qa-aud", Recipients: 200, IOSPercent: 50}
	aud := h.uploadAudience(d, o, nil)
	// Three test devices: two by token (not in the audience), one by the
	// user id of an audience member.
	qa := synth.Options{Campaign: "qa-phones", Recipients: 2, IOSPercent: 50}
	entries := []map[string]string{
		{"kind": "token", "platform": qa.Recipient(0).Platform.String(), "value": qa.Recipient(0).Token, "reason": "qa"},
		{"kind": "token", "platform": qa.Recipient(1).Platform.String(), "value": qa.Recipient(1).Token, "reason": "qa"},
		{"kind": "user", "value": o.Recipient(7).UserID, "reason": "qa"},
	}
	h.must(d, http.StatusOK, "POST", "/api/lists/whitelist/entries", operatorToken, map[string]any{"entries": entries}, nil)
	id := h.newCampaign(d, map[string]any{"name": "QA", "audience": aud})
	var ans struct {
		Campaign string `json:"campaign"`
		Devices  int    `json:"devices"`
	}
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/test", operatorToken, nil, &ans)
	if ans.Devices != 3 || ans.Campaign != id+".test-1" {
		t.Fatalf("test send answered %+v, want 3 devices in %s.test-1", ans, id)
	}
	want := []string{qa.Recipient(0).Token, qa.Recipient(1).Token, o.Recipient(7).Token}
	testwait.For(t, 30*time.Second, "the 3 test devices", func() bool { return accepted(h.sim) >= 3 })
	h.counted(d, ans.Campaign, 3)
	tokens := h.sim.Tokens()
	for _, tok := range want {
		if tokens[tok] != 1 {
			t.Errorf("test device %s got %d pushes, want 1", dispatcher.ShortToken(tok), tokens[tok])
		}
	}
	if n := accepted(h.sim); n != 3 {
		t.Errorf("the simulator accepted %d pushes, want 3", n)
	}
	c := h.consoleCampaign(d, id)
	if c.Status != "draft" || c.Counters != (dispatcher.Counters{}) {
		t.Errorf("the campaign after its test: %+v, want a draft with zero counters", c)
	}
}

func TestApprovalRolesAndAudit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	d := h.start(map[string]string{"PUSHD_ADMIN_REQUIRE_APPROVAL": "true"})
	o := synth.Options{Campaign: "approve-aud", Recipients: 10, IOSPercent: 50}
	aud := h.uploadAudience(d, o, nil)

	// Viewers may look, never change.
	h.must(d, http.StatusForbidden, "POST", "/api/campaigns", viewerToken, map[string]any{"name": "x", "audience": aud}, nil)
	id := h.newCampaign(d, map[string]any{"name": "Needs approval", "audience": aud, "send_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	h.must(d, http.StatusForbidden, "POST", "/api/campaigns/"+id+"/schedule", viewerToken, nil, nil)

	var c consoleCampaign
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/schedule", operatorToken, nil, &c)
	if c.Status != "awaiting_approval" {
		t.Fatalf("after schedule: %q, want awaiting_approval", c.Status)
	}
	h.must(d, http.StatusForbidden, "POST", "/api/campaigns/"+id+"/approve", operatorToken, nil, nil)
	h.must(d, http.StatusForbidden, "POST", "/api/campaigns/"+id+"/approve", viewerToken, nil, nil)
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/approve", operator2Token, nil, &c)
	if c.Status != "scheduled" {
		t.Fatalf("after approval: %q, want scheduled", c.Status)
	}
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/cancel", operatorToken, nil, nil)
	if s := h.consoleCampaign(d, id).Status; s != "cancelled" {
		t.Fatalf("after cancel: %q", s)
	}
	// Final: nothing more may change it.
	h.must(d, http.StatusConflict, "PUT", "/api/campaigns/"+id, operatorToken, map[string]any{"name": "late edit", "audience": aud}, nil)

	// The audit log has every step, newest first; viewers may not read it.
	h.must(d, http.StatusForbidden, "GET", "/api/audit", viewerToken, nil, nil)
	var page struct {
		Entries []struct {
			Actor  string `json:"actor"`
			Action string `json:"action"`
			Target string `json:"target"`
		} `json:"entries"`
	}
	h.must(d, http.StatusOK, "GET", "/api/audit?target="+id, adminToken, nil, &page)
	var actions []string
	for _, e := range page.Entries {
		actions = append(actions, e.Action)
	}
	want := []string{"campaign.cancel", "campaign.approve", "campaign.schedule", "campaign.create"}
	if strings.Join(actions, " ") != strings.Join(want, " ") {
		t.Errorf("audit of %s: %v, want %v", id, actions, want)
	}
	if len(page.Entries) == 4 && page.Entries[1].Actor == page.Entries[2].Actor {
		t.Errorf("approved by the scheduler %q", page.Entries[1].Actor)
	}
	h.must(d, http.StatusOK, "GET", "/api/audit?action=audience.import&limit=1", adminToken, nil, &page)
	if len(page.Entries) != 1 || page.Entries[0].Target != aud {
		t.Errorf("audience import audit: %+v", page.Entries)
	}
}

func TestBadCampaignInputNamesTheField(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	d := h.start(nil)
	aud := h.uploadAudience(d, synth.Options{Campaign: "bad-aud", Recipients: 3, IOSPercent: 50}, nil)
	n := map[string]any{"title": "t", "body": "b"}
	for _, tc := range []struct {
		def   map[string]any
		field string
	}{
		{map[string]any{"name": "x", "audience": aud, "notification": n, "time_zone": "Mars/Olympus"}, "time_zone"},
		{map[string]any{"name": "x", "audience": "no-such-audience", "notification": n}, "audience"},
		{map[string]any{"name": "x", "audience": aud, "notification": map[string]any{"title": "t", "body": strings.Repeat("가", 1400)}}, "notification"},
		{map[string]any{"name": "x", "audience": aud, "notification": n, "send_at": "tomorrow"}, "send_at"},
	} {
		j, _ := json.Marshal(tc.def)
		code, body := h.call(d, "POST", "/api/campaigns", operatorToken, "application/json", bytes.NewReader(j))
		if code != http.StatusBadRequest || !strings.Contains(string(body), tc.field) {
			t.Errorf("%s: %d %s, want 400 naming %s", j, code, body, tc.field)
		}
	}
	id := h.newCampaign(d, map[string]any{"name": "past", "audience": aud, "send_at": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)})
	code, body := h.call(d, "POST", "/api/campaigns/"+id+"/schedule", operatorToken, "", nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "send_at") {
		t.Errorf("scheduling a send_at in the past: %d %s, want 400 naming send_at", code, body)
	}
	var list struct{ Campaigns []consoleCampaign }
	h.must(d, http.StatusOK, "GET", "/api/campaigns", viewerToken, nil, &list)
	if len(list.Campaigns) != 1 {
		t.Errorf("after 4 refused creations: %d campaigns, want 1", len(list.Campaigns))
	}
}

func TestCancelledBeforeItsTimeSendsNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	d := h.start(nil)
	tp := h.tap()
	o := synth.Options{Campaign: "cancel-early", Recipients: 100, IOSPercent: 50}
	aud := h.uploadAudience(d, o, nil)
	sendAt := time.Now().Add(2 * time.Second)
	id := h.newCampaign(d, map[string]any{"name": "cancel me", "audience": aud, "send_at": sendAt.UTC().Format(time.RFC3339)})
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/schedule", operatorToken, nil, nil)
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/cancel", operatorToken, nil, nil)
	// Past its time, a second campaign scheduled after it fires: by then
	// the scheduler has looked at the cancelled one too.
	id2 := h.newCampaign(d, map[string]any{"name": "marker", "audience": aud, "send_at": sendAt.Add(time.Second).UTC().Format(time.RFC3339)})
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id2+"/schedule", operatorToken, nil, nil)
	h.counted(d, id2, 100)
	for _, b := range tp.batches() {
		if b.Campaign.ID != id2 {
			t.Errorf("batch %s of %s published", b.BatchID, b.Campaign.ID)
		}
	}
	if s := h.consoleCampaign(d, id).Status; s != "cancelled" {
		t.Errorf("status %q", s)
	}
}

func TestRecipientTimeZoneHoldsEachZoneUntilItsLocalTime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	d := h.start(nil)
	tp := h.tap()
	o := synth.Options{Campaign: "zones", Recipients: 300, IOSPercent: 50}
	zones := []string{"Asia/Seoul", "America/New_York", ""}
	aud := h.uploadAudience(d, o, func(i int) string { return zones[i%3] })
	seoul, _ := time.LoadLocation("Asia/Seoul")
	ny, _ := time.LoadLocation("America/New_York")
	// A wall time 3 s ahead in Seoul is 13 or 14 hours ahead in New York:
	// Seoul's recipients and those without a zone (the campaign's) get it
	// now, New York's batches are held until the same wall time there.
	wall := time.Now().Add(3 * time.Second).In(seoul).Truncate(time.Second)
	id := h.newCampaign(d, map[string]any{"name": "local 9am", "audience": aud,
		"send_at": wall.Format("2006-01-02T15:04:05"), "time_zone": "Asia/Seoul", "recipient_time_zone": true})
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/schedule", operatorToken, nil, nil)
	testwait.For(t, 30*time.Second, "Seoul's 200 recipients sent", func() bool { return accepted(h.sim) >= 200 })
	nyAt := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, ny)
	testwait.For(t, 10*time.Second, "every batch published", func() bool { return tp.messages() >= 3 })
	for _, b := range tp.batches() {
		var zone string
		for _, r := range b.Recipients {
			i := recipientIndex(o, r.Token)
			if zone != "" && zones[i%3] != zone {
				t.Errorf("batch %s mixes zones", b.BatchID)
			}
			zone = zones[i%3]
		}
		var want time.Time
		switch zone {
		case "America/New_York":
			want = nyAt
		default:
			want = wall
		}
		if zone == "America/New_York" && (b.NotBefore == nil || !b.NotBefore.Equal(want)) {
			t.Errorf("batch %s (%s): not_before %v, want %v", b.BatchID, zone, b.NotBefore, want)
		}
		if b.NotBefore != nil && b.NotBefore.Before(time.Now().Add(-time.Minute)) && zone == "America/New_York" {
			t.Errorf("batch %s for New York not held", b.BatchID)
		}
	}
	tokens := h.sim.Tokens()
	for i := range o.Recipients {
		sent := tokens[o.Recipient(i).Token] > 0
		if want := zones[i%3] != "America/New_York"; sent != want {
			t.Errorf("recipient %d in %q: sent %v, want %v", i, zones[i%3], sent, want)
		}
	}
}

// recipientIndex finds the index of token in o; -1 when it is not there.
var recipientIndexes sync.Map // synth.Options.Campaign -> map[string]int

func recipientIndex(o synth.Options, token string) int {
	m, ok := recipientIndexes.Load(o.Campaign)
	if !ok {
		idx := make(map[string]int, o.Recipients)
		for i := range o.Recipients {
			idx[o.Recipient(i).Token] = i
		}
		m, _ = recipientIndexes.LoadOrStore(o.Campaign, idx)
	}
	if i, ok := m.(map[string]int)[token]; ok {
		return i
	}
	return -1
}

// scheduleWhileDown schedules a campaign of o's audience 2 s ahead, stops
// pushd, waits until 3 s past its time, and starts pushd again with
// extra. It returns the new daemon and the campaign id.
func (h *harness) scheduleWhileDown(o synth.Options, extra map[string]string) (*daemon, string) {
	h.t.Helper()
	store := filepath.Join(h.t.TempDir(), "pushd.db")
	h.env["PUSHD_STORE_DSN"] = store
	d := h.start(nil)
	aud := h.uploadAudience(d, o, nil)
	sendAt := time.Now().Add(2 * time.Second).Truncate(time.Second)
	id := h.newCampaign(d, map[string]any{"name": "while down", "audience": aud, "send_at": sendAt.UTC().Format(time.RFC3339)})
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/schedule", operatorToken, nil, nil)
	if err := d.stop(); err != nil {
		h.t.Fatal(err)
	}
	if accepted(h.sim) != 0 {
		h.t.Fatal("sent before its time")
	}
	// Nothing runs to wait for: the wall clock must pass the campaign's
	// time while no pushd runs.
	<-time.After(time.Until(sendAt.Add(3 * time.Second)))
	return h.start(extra), id
}

func TestCampaignDueWhilePushdWasDownIsSentWhenItStarts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	o := synth.Options{Campaign: "down-3s", Recipients: 500, IOSPercent: 50}
	d, id := h.scheduleWhileDown(o, nil)
	c := h.counted(d, id, 500)
	if c.Sent != 500 {
		t.Errorf("counters %+v", c)
	}
	if dups := h.delivered(o, true); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

func TestCampaignLaterThanMaxLateIsMissedAndNotSent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	o := synth.Options{Campaign: "down-missed", Recipients: 500, IOSPercent: 50}
	d, id := h.scheduleWhileDown(o, map[string]string{"PUSHD_SCHEDULER_MAX_LATE": "1s"})
	testwait.For(t, 10*time.Second, "the campaign missed", func() bool { return h.consoleCampaign(d, id).Status == "missed" })
	// A second campaign, due now, fires after the scheduler has dealt
	// with the missed one.
	aud := h.uploadAudience(d, synth.Options{Campaign: "after-missed", Recipients: 10, IOSPercent: 50}, nil)
	id2 := h.newCampaign(d, map[string]any{"name": "marker", "audience": aud})
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id2+"/schedule", operatorToken, nil, nil)
	h.counted(d, id2, 10)
	if n := accepted(h.sim); n != 10 {
		t.Errorf("the simulator accepted %d pushes, want only the marker's 10", n)
	}
	// A missed campaign can be scheduled again.
	h.must(d, http.StatusOK, "PUT", "/api/campaigns/"+id, operatorToken, map[string]any{"name": "again", "audience": h.consoleAudience(d, id)}, nil)
}

// consoleAudience answers the audience of campaign id.
func (h *harness) consoleAudience(d *daemon, id string) string {
	h.t.Helper()
	var c struct {
		Definition struct {
			Audience string `json:"audience"`
		} `json:"definition"`
	}
	h.must(d, http.StatusOK, "GET", "/api/campaigns/"+id, viewerToken, nil, &c)
	return c.Definition.Audience
}

func TestKill9WhileSchedulerPublishesThenRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	h.env["PUSHD_STORE_DSN"] = filepath.Join(t.TempDir(), "pushd.db")
	// The restarted pushd is another owner: it takes the campaign over
	// once the dead one's lease runs out.
	h.env["PUSHD_SCHEDULER_LEASE"] = "3s"
	d := h.spawn(nil)
	tp := h.tap()
	o := synth.Options{Campaign: "kill-publish", Recipients: 50000, IOSPercent: 50}
	aud := h.uploadAudience(d, o, nil)
	id := h.newCampaign(d, map[string]any{"name": "kill me", "audience": aud})
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/schedule", operatorToken, nil, nil)
	testwait.For(t, 30*time.Second, "publishing to begin", func() bool { return tp.messages() >= 5 })
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = d.stop()
	at := tp.messages()
	t.Logf("SIGKILL with %d of 50 batches published", at)
	if at >= 50 {
		t.Fatalf("publishing finished before the kill; the test proves nothing")
	}
	killed := time.Now()
	h.spawn(nil)
	took := h.allDelivered(o, 3*time.Minute, killed)
	// A kill between the broker taking a batch and the scheduler storing
	// its cursor leaves that one batch in doubt: no producer can know
	// whether it was taken, so it is published again, the same bytes
	// under the same id, and the ledger recognises the copy
	// (docs/campaigns.md). Nothing else may be published twice.
	again := publishedOnce(t, tp.batches(), o)
	t.Logf("batches published twice: %v", again)
	if len(again) > 1 {
		t.Errorf("%d batches published twice, want at most the one in doubt", len(again))
	}
	dups := h.delivered(o, false)
	// docs/semantics.md: the sends in flight, plus those answered since
	// the last ledger write; the scheduler republishes at most the chunk
	// it was publishing, byte for byte, which the ledger recognises.
	bound := inFlightMax + 1000
	t.Logf("after restart: every recipient delivered %v after the kill; %d duplicates at the simulator (bound %d)", took.Round(time.Millisecond), dups, bound)
	if dups > bound {
		t.Errorf("%d duplicates, more than the bound %d", dups, bound)
	}
	h.deadQueueEmpty()
	h.countersAddUp()
}

func TestCancelMidPublishStopsPublishingAndSends(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withConsole()
	d := h.start(nil)
	tp := h.tap()
	o := synth.Options{Campaign: "cancel-mid", Recipients: 50000, IOSPercent: 50}
	aud := h.uploadAudience(d, o, nil)
	id := h.newCampaign(d, map[string]any{"name": "cancel mid", "audience": aud, "rate_per_second": 500})
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/schedule", operatorToken, nil, nil)
	testwait.For(t, 30*time.Second, "publishing to begin", func() bool { return tp.messages() >= 3 })
	h.must(d, http.StatusOK, "POST", "/api/campaigns/"+id+"/cancel", operatorToken, nil, nil)
	answered := time.Now()
	atCancel := tp.messages()
	// Sends stop within a second of the answer.
	<-time.After(time.Until(answered.Add(time.Second)))
	sentAfter1s := accepted(h.sim)
	c := h.settled(d, id)
	if n := accepted(h.sim); n != sentAfter1s {
		t.Errorf("%d sends more than 1s after the cancel's answer", n-sentAfter1s)
	}
	published := len(tp.batches())
	t.Logf("cancel with %d batches published, %d in all; %d sent; counters %+v", atCancel, published, sentAfter1s, c)
	if published >= 50 {
		t.Errorf("every batch was published despite the cancel")
	}
	if s := h.consoleCampaign(d, id).Status; s != "cancelled" {
		t.Errorf("status %q", s)
	}
	h.countersAddUp()
}

// settled waits until every recipient campaign id received is counted
// one way or another and none is in flight, and answers its counters.
func (h *harness) settled(d *daemon, id string) dispatcher.Counters {
	h.t.Helper()
	var c consoleCampaign
	testwait.For(h.t, 2*time.Minute, "campaign "+id+" settled", costly(func() bool {
		c = h.consoleCampaign(d, id)
		n := c.Counters
		return n.Received > 0 && n.Sent+n.Failed+n.Filtered+n.Dropped+n.Cancelled == n.Received && c.InFlight == 0
	}))
	return c.Counters
}
