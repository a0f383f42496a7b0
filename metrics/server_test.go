package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushd/pushd/dispatcher"
)

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.SendDone(dispatcher.IOS, dispatcher.Sent, 3*time.Millisecond)
	m.SendDone(dispatcher.Android, dispatcher.RetryLater, time.Millisecond)
	m.BatchReceived(dispatcher.High, 7)
	m.RecipientsDropped("malformed_token", 2)
	m.RecipientsCancelled(4)
	m.ThrottleWait("campaign", 200*time.Millisecond)
	m.ThrottleWait("fcm", 0)
	m.RateLimit("fcm", 9500)
	m.LedgerSkipped(3)
	m.Campaigns(map[dispatcher.Status]int{dispatcher.StatusRunning: 2, dispatcher.StatusPaused: 1})
	var ready atomic.Bool
	srv := httptest.NewServer(Handler(reg, ready.Load))
	defer srv.Close()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Errorf("readyz while not ready: %d", code)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz when ready: %d", code)
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`pushd_sends_total{provider="apns",result="sent"} 1`,
		`pushd_sends_total{provider="fcm",result="retry"} 1`,
		`pushd_sends_total{provider="fcm",result="invalid_token"} 0`,
		`pushd_send_duration_seconds_count{provider="apns"} 1`,
		`pushd_recipients_received_total{lane="high"} 7`,
		`pushd_recipients_dropped_total{reason="malformed_token"} 2`,
		`pushd_recipients_cancelled_total 4`,
		`pushd_ledger_skipped_total 3`,
		`pushd_throttle_wait_seconds_count{level="campaign"} 1`,
		`pushd_throttle_wait_seconds_bucket{level="campaign",le="0.1"} 0`,
		`pushd_throttle_wait_seconds_count{level="fcm"} 1`,
		`pushd_rate_limit_per_second{level="fcm"} 9500`,
		`pushd_campaigns{status="running"} 2`,
		`pushd_campaigns{status="paused"} 1`,
		`pushd_campaigns{status="finished"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestRecordingDoesNotAllocate(t *testing.T) {
	m := New(prometheus.NewRegistry())
	if n := testing.AllocsPerRun(100, func() {
		m.SendDone(dispatcher.IOS, dispatcher.Sent, time.Millisecond)
		m.InFlight(1)
		m.ThrottleWait(dispatcher.LevelCampaign, time.Millisecond)
	}); n != 0 {
		t.Errorf("per-recipient metrics allocate %v times", n)
	}
}
