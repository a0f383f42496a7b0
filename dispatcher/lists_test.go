package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/lists"
)

func TestBlacklistAndWhitelistFilter(t *testing.T) {
	f := &fakeFilter{
		black: map[string]bool{fmt.Sprintf("%064x", 0): true, "u-3": true, fmt.Sprintf("%064x", 4): true},
		white: map[string]bool{fmt.Sprintf("%064x", 4): true, fmt.Sprintf("%064x", 6): true, "u-8": true},
	}
	mk := func(campaign string, test bool) *Batch {
		b := iosBatch(campaign, "", 10)
		for i := range b.Recipients {
			b.Recipients[i].UserID = fmt.Sprintf("u-%d", i)
		}
		b.Campaign.Test = test
		return b
	}
	t.Run("normal campaign: blacklist only", func(t *testing.T) {
		b := setupWith(t, Config{}, f, nil)
		b.handle(t, mk("c", false), Normal)
		b.settle(t)
		sent := b.ios.sends()
		// 0 and 4 by token, 3 by user id.
		for _, i := range []int{0, 3, 4} {
			if sent[fmt.Sprintf("%064x", i)] != 0 {
				t.Errorf("blacklisted recipient %d was sent", i)
			}
		}
		if len(sent) != 7 || b.met.filtered.Load() != 3 {
			t.Errorf("sent %d, filtered %d; want 7 and 3", len(sent), b.met.filtered.Load())
		}
		testwait.For(t, waitLong, "filtered counter", func() bool {
			info, _ := b.d.Campaign(context.Background(), "c")
			return info.Counters.Filtered == 3 && info.Counters.Sent == 7
		})
	})
	t.Run("test campaign: whitelisted only, blacklist wins", func(t *testing.T) {
		b := setupWith(t, Config{}, f, nil)
		b.handle(t, mk("t", true), Normal)
		b.settle(t)
		sent := b.ios.sends()
		// 4 is whitelisted but blacklisted too; 6 by token and 8 by user id.
		if len(sent) != 2 || sent[fmt.Sprintf("%064x", 6)] != 1 || sent[fmt.Sprintf("%064x", 8)] != 1 {
			t.Errorf("sent %v, want only recipients 6 and 8", sent)
		}
	})
	t.Run("whitelist-only mode", func(t *testing.T) {
		b := setupWith(t, Config{WhitelistOnly: true}, f, nil)
		b.handle(t, mk("w", false), Normal)
		b.settle(t)
		if n := b.ios.total(); n != 2 {
			t.Errorf("sent %d in whitelist-only mode, want 2", n)
		}
	})
}

func TestInvalidTokensAreReportedAndBlacklisted(t *testing.T) {
	bl := &fakeBlacklist{}
	b := setupWith(t, Config{}, nil, bl)
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	b.ios.send = func(_ context.Context, to *Recipient) Result {
		if strings.HasPrefix(to.Token, "dead") {
			return Result{Outcome: InvalidToken, Status: 410, Reason: "Unregistered", At: at}
		}
		return Result{Outcome: Sent}
	}
	batch := iosBatch("c", "dead", 3)
	batch.Recipients = append(batch.Recipients, iosBatch("c", "a", 2).Recipients...)
	batch.Recipients[0].UserID = "u-0"
	b.handle(t, batch, Normal)
	b.settle(t)
	b.queues.mu.Lock()
	events := append([]string(nil), b.queues.events...)
	b.queues.mu.Unlock()
	if len(events) != 3 {
		t.Fatalf("%d events, want 3: %v", len(events), events)
	}
	// Sends finish in any order: find the event of recipient 0.
	var ev map[string]any
	for _, e := range events {
		var m map[string]any
		if err := json.Unmarshal([]byte(strings.TrimPrefix(e, "token.invalid ")), &m); err != nil {
			t.Fatalf("event %q: %v", e, err)
		}
		if m["token"] == batch.Recipients[0].Token {
			ev = m
		}
	}
	if ev["event"] != "token.invalid" || ev["platform"] != "ios" || ev["reason"] != "Unregistered" ||
		ev["user_id"] != "u-0" || ev["campaign_id"] != "c" || ev["provider_timestamp"] != "2026-11-20T08:00:00Z" ||
		!strings.HasPrefix(ev["token"].(string), "dead") {
		t.Errorf("event %v", ev)
	}
	if len(bl.entries) != 3 || bl.entries[0].List != lists.Blacklist || bl.entries[0].Kind != lists.Token ||
		bl.entries[0].Platform != "ios" || bl.entries[0].Reason != "invalid_token" {
		t.Errorf("blacklist entries %+v", bl.entries)
	}
	if b.met.invalid.Load() != 3 {
		t.Errorf("invalid token metric %d", b.met.invalid.Load())
	}
}
