package main

// End-to-end tests of the blacklist, the whitelist and invalid-token
// feedback, against the real RabbitMQ and the simulator.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/queue/queuetest"
)

// importCSV posts a CSV file to a list's import endpoint.
func (h *harness) importCSV(d *daemon, list, csv string) {
	h.t.Helper()
	if code, body := h.postCSV(d, "/api/lists/"+list+"/import", csv); code != 200 {
		h.t.Fatalf("import %s: %d %s", list, code, body)
	}
}

// counted waits until every recipient of campaign id is accounted for in
// its counters, and returns them.
func (h *harness) counted(d *daemon, id string, n int64) dispatcher.Counters {
	h.t.Helper()
	var info dispatcher.CampaignInfo
	defer func() {
		if h.t.Failed() {
			h.t.Logf("campaign %s at the last look: %+v", id, info)
		}
	}()
	testwait.For(h.t, 5*time.Minute, "campaign "+id+" fully counted", costly(func() bool {
		var got dispatcher.CampaignInfo
		if h.api(d, "GET", "/api/campaigns/"+id, viewerToken, nil, &got) != 200 {
			return false
		}
		info = got
		c := info.Counters
		return c.Sent+c.Failed+c.Filtered+c.Dropped+c.Cancelled == n && info.InFlight == 0
	}))
	return info.Counters
}

func TestBlacklistedRecipientsAreNeverSent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	o := synth.Options{Campaign: "bl-100k", Recipients: 100000, IOSPercent: 50}
	// 10% blacklisted: every 20th by user id, every 20th (offset 10) by
	// token.
	var csv strings.Builder
	csv.WriteString("kind,value,platform,reason\n")
	blocked := map[string]bool{}
	for i := range o.Recipients {
		r := o.Recipient(i)
		switch i % 20 {
		case 0:
			fmt.Fprintf(&csv, "user,%s,,opt_out\n", r.UserID)
			blocked[r.Token] = true
		case 10:
			fmt.Fprintf(&csv, "token,%s,%s,abuse\n", r.Token, r.Platform)
			blocked[r.Token] = true
		}
	}
	h.importCSV(d, "blacklist", csv.String())
	h.publish(o, dispatcher.Normal)
	c := h.counted(d, "bl-100k", 100000)
	if c.Sent != 90000 || c.Filtered != 10000 {
		t.Errorf("counters %+v, want 90000 sent and 10000 filtered", c)
	}
	tokens := h.sim.Tokens()
	var leaked, missing, dups int
	for i := range o.Recipients {
		tok := o.Recipient(i).Token
		switch n := tokens[tok]; {
		case blocked[tok] && n > 0:
			leaked++
		case !blocked[tok] && n == 0:
			missing++
		case n > 1:
			dups++
		}
	}
	if leaked+missing+dups > 0 {
		t.Errorf("blacklisted but sent %d, not sent %d, sent more than once %d", leaked, missing, dups)
	}
	m := scrape(t, d.metrics)
	if m[`pushd_recipients_filtered_total{list="blacklist",reason="opt_out"}`] != 5000 || m[`pushd_recipients_filtered_total{list="blacklist",reason="abuse"}`] != 5000 {
		t.Errorf("filter metrics: opt_out %v abuse %v", m[`pushd_recipients_filtered_total{list="blacklist",reason="opt_out"}`], m[`pushd_recipients_filtered_total{list="blacklist",reason="abuse"}`])
	}
	h.countersAddUp()
}

func TestTestCampaignSendsOnlyToWhitelisted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	o := synth.Options{Campaign: "test-1000", Recipients: 1000, IOSPercent: 50, Test: true}
	var entries []map[string]string
	white := map[string]bool{}
	for i := 0; i < 1000; i += 100 { // 10 whitelisted: half by user id, half by token
		r := o.Recipient(i)
		white[r.Token] = true
		if i%200 == 0 {
			entries = append(entries, map[string]string{"kind": "user", "value": r.UserID, "reason": "qa"})
		} else {
			entries = append(entries, map[string]string{"kind": "token", "value": r.Token, "platform": r.Platform.String(), "reason": "qa_device"})
		}
	}
	if code := h.api(d, "POST", "/api/lists/whitelist/entries", operatorToken, map[string]any{"entries": entries}, nil); code/100 != 2 {
		t.Fatalf("add whitelist entries: %d", code)
	}
	h.publish(o, dispatcher.Normal)
	c := h.counted(d, "test-1000", 1000)
	if c.Sent != 10 || c.Filtered != 990 {
		t.Errorf("counters %+v, want exactly 10 sent", c)
	}
	tokens := h.sim.Tokens()
	sent := 0
	for i := range o.Recipients {
		tok := o.Recipient(i).Token
		if n := tokens[tok]; n > 0 {
			sent += n
			if !white[tok] {
				t.Errorf("recipient %d sent but not whitelisted", i)
			}
		}
	}
	if sent != 10 {
		t.Errorf("the simulator got %d sends, want 10", sent)
	}
	h.countersAddUp()
}

func TestInvalidTokensAreReportedOnceAndBlacklisted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	// A queue of our own on the events exchange, like a producer's.
	events, err := h.ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ch.QueueBind(events.Name, "token.invalid", h.top.EventsExchange, false, nil); err != nil {
		t.Fatal(err)
	}
	o := synth.Options{Campaign: "feedback", Recipients: 20, IOSPercent: 50}
	batch := func(campaign string) *dispatcher.Batch {
		var b *dispatcher.Batch
		o.Campaign = campaign
		for bt := range o.Batches() {
			b = bt
		}
		for i := range 5 {
			b.Recipients = append(b.Recipients,
				dispatcher.Recipient{Platform: dispatcher.IOS, Token: fmt.Sprintf("deadbeefdeadbeef%048x", i), UserID: fmt.Sprintf("gone-%d", i)},
				dispatcher.Recipient{Platform: dispatcher.IOS, Token: fmt.Sprintf("bad0bad0bad0bad0%048x", i)},
				dispatcher.Recipient{Platform: dispatcher.Android, Token: fmt.Sprintf("unregistered-%d", i)},
			)
		}
		return b
	}
	publishBatch := func(b *dispatcher.Batch) {
		t.Helper()
		queuetest.DeleteAtEnd(t, h.url, h.top.CampaignQueue(b.Campaign.ID))
		body, _ := json.Marshal(b)
		queuetest.Publish(t, h.ch, h.top.Exchange, h.top.RoutingKey, body)
	}
	first := batch("feedback")
	publishBatch(first)
	c := h.counted(d, "feedback", 35)
	if c.Sent != 20 || c.Failed != 15 {
		t.Errorf("counters %+v, want 20 sent and 15 failed", c)
	}
	got := map[string]map[string]any{}
	for range 15 {
		m := queuetest.Get(t, h.ch, events.Name, 10*time.Second)
		var ev map[string]any
		if err := json.Unmarshal(m.Body, &ev); err != nil {
			t.Fatal(err)
		}
		tok, _ := ev["token"].(string)
		if got[tok] != nil {
			t.Errorf("two events for %s", tok)
		}
		got[tok] = ev
	}
	if n := queuetest.Ready(t, h.ch, events.Name); n != 0 {
		t.Errorf("%d events more than the 15 invalid tokens", n)
	}
	for _, r := range first.Recipients[20:] {
		ev := got[r.Token]
		if ev == nil {
			t.Errorf("no event for %s", r.Token[:16])
			continue
		}
		wantReason := map[string]string{"deadbeef": "Unregistered", "bad0bad0": "BadDeviceToken", "unregist": "UNREGISTERED"}[r.Token[:8]]
		if ev["event"] != "token.invalid" || ev["platform"] != r.Platform.String() || ev["reason"] != wantReason || ev["campaign_id"] != "feedback" {
			t.Errorf("event %v", ev)
		}
		if r.UserID != "" && ev["user_id"] != r.UserID {
			t.Errorf("event user_id %v, want %s", ev["user_id"], r.UserID)
		}
		if strings.HasPrefix(r.Token, "deadbeef") && ev["provider_timestamp"] == nil {
			t.Errorf("410 event without the provider timestamp: %v", ev)
		}
	}
	// One blacklist entry each. The dispatcher adds them after publishing
	// the events (and before acking the batch), so they may trail the
	// events by a moment.
	var page struct {
		Entries []struct{ Kind, Value, Platform, Reason string } `json:"entries"`
	}
	testwait.For(t, 30*time.Second, "15 blacklist entries", costly(func() bool {
		page.Entries = nil
		h.api(d, "GET", "/api/lists/blacklist/entries?limit=100", viewerToken, nil, &page)
		return len(page.Entries) >= 15
	}))
	if len(page.Entries) != 15 {
		t.Fatalf("%d blacklist entries, want 15", len(page.Entries))
	}
	for _, e := range page.Entries {
		if e.Kind != "token" || e.Reason != "invalid_token" || got[e.Value] == nil {
			t.Errorf("blacklist entry %+v", e)
		}
	}
	// The next campaign to the same devices does not try them again.
	publishBatch(batch("feedback-2"))
	c = h.counted(d, "feedback-2", 35)
	if c.Sent != 20 || c.Filtered != 15 {
		t.Errorf("second campaign %+v, want the 15 invalid tokens filtered", c)
	}
	for _, r := range first.Recipients[20:] {
		if n := h.sim.Count(r.Token); n != 1 {
			t.Errorf("%s reached the simulator %d times", r.Token[:16], n)
		}
	}
	h.countersAddUp()
}

func TestListChangeReachesAnotherInstanceWithinTwoSeconds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	a := h.start(nil)
	b := h.start(nil) // same store, same broker: a second instance
	o := synth.Options{Campaign: "two-instances", Recipients: 200, IOSPercent: 50}
	victim := o.Recipient(7)
	revBefore := scrape(t, b.metrics)["pushd_lists_revision"]
	start := time.Now()
	entry := map[string]string{"kind": "token", "value": victim.Token, "platform": victim.Platform.String(), "reason": "opt_out"}
	if code := h.api(a, "POST", "/api/lists/blacklist/entries", operatorToken, entry, nil); code/100 != 2 {
		t.Fatalf("add: %d", code)
	}
	testwait.For(t, 10*time.Second, "the change applied by the other instance", func() bool {
		m := scrape(t, b.metrics)
		return m["pushd_lists_revision"] > revBefore && m[`pushd_list_entries{list="blacklist"}`] == 1
	})
	took := time.Since(start)
	t.Logf("blacklist entry added through one instance applied by the other after %v", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("took %v, more than 2s", took)
	}
	// Both instances consume the campaign; neither sends to the entry.
	h.publish(o, dispatcher.Normal)
	c := h.counted(a, "two-instances", 200)
	t.Logf("counters %+v", c)
	if c.Sent != 199 || c.Filtered != 1 || h.sim.Count(victim.Token) != 0 {
		t.Errorf("counters %+v, victim sent %d times", c, h.sim.Count(victim.Token))
	}
}
