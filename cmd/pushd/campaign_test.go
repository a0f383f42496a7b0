package main

// End-to-end tests of throttling and campaign control through the admin
// API, against the real RabbitMQ and the simulator.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/queue/queuetest"
)

const (
	operatorToken = "op-secret-token"
	viewerToken   = "view-secret-token"
)

// withAdmin adds a tokens file and short campaign bookkeeping to the
// harness.
func (h *harness) withAdmin() {
	h.t.Helper()
	file := filepath.Join(h.t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("operator:"+operatorToken+"\nviewer:"+viewerToken+"\n"), 0o600); err != nil {
		h.t.Fatal(err)
	}
	h.env["PUSHD_ADMIN_TOKENS_FILE"] = file
	h.env["PUSHD_DISPATCHER_CAMPAIGN_IDLE"] = "2s"
}

// api calls the admin API of d and decodes the JSON answer into out.
func (h *harness) api(d *daemon, method, path, token string, body any, out any) int {
	h.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+d.admin+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func (h *harness) campaign(d *daemon, id string) dispatcher.CampaignInfo {
	h.t.Helper()
	var info dispatcher.CampaignInfo
	if code := h.api(d, "GET", "/api/campaigns/"+id, viewerToken, nil, &info); code != 200 {
		h.t.Fatalf("GET campaign %s: %d", id, code)
	}
	return info
}

func (h *harness) control(d *daemon, id, action string) dispatcher.CampaignInfo {
	h.t.Helper()
	var info dispatcher.CampaignInfo
	if code := h.api(d, "POST", "/api/campaigns/"+id+"/"+action, operatorToken, nil, &info); code != 200 {
		h.t.Fatalf("%s %s: %d", action, id, code)
	}
	return info
}

// sent returns how many recipients of o the simulator accepted.
func (h *harness) sent(o synth.Options) int {
	tokens := h.sim.Tokens()
	n := 0
	for _, tok := range h.tokensOf(o) {
		if tokens[tok] > 0 {
			n++
		}
	}
	return n
}

// sentAtLeast reports whether the simulator accepted n recipients of o or
// more. It looks at the simulator's total first, which costs nothing, so
// that polling it is cheap until the answer may be yes.
func (h *harness) sentAtLeast(o synth.Options, n int) bool {
	return accepted(h.sim) >= n && h.sent(o) >= n
}

// sentSince polls sent(o) and returns the count and the time it was seen.
type sample struct {
	at time.Time
	n  int
}

func (h *harness) sample(o synth.Options) sample { return sample{time.Now(), h.sent(o)} }

func rateBetween(a, b sample) float64 { return float64(b.n-a.n) / b.at.Sub(a.at).Seconds() }

func TestCampaignRateIsKept(t *testing.T) {
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	o := h.publish(synth.Options{Campaign: "rate-100", Recipients: 3000, IOSPercent: 50, Rate: 100}, dispatcher.Normal)
	testwait.For(t, 30*time.Second, "sending started", func() bool { return h.sentAtLeast(o, 20) })
	first := h.sample(o)
	time.Sleep(10 * time.Second)
	last := h.sample(o)
	got := rateBetween(first, last)
	t.Logf("campaign at 100/s: %d sends in %v = %.1f/s", last.n-first.n, last.at.Sub(first.at).Round(time.Millisecond), got)
	if got < 95 || got > 105 {
		t.Errorf("measured %.1f/s, want 100/s within 5%%", got)
	}
	info := h.campaign(d, "rate-100")
	if info.RatePerSecond != 100 || info.RateSource != "message" || info.Status != dispatcher.StatusRunning {
		t.Errorf("campaign info %+v", info)
	}
	h.control(d, "rate-100", "cancel")
}

func TestRaisingTheRateShowsWithinTwoSeconds(t *testing.T) {
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	o := h.publish(synth.Options{Campaign: "rate-up", Recipients: 8000, IOSPercent: 50, Rate: 100}, dispatcher.Normal)
	testwait.For(t, 30*time.Second, "sending started", func() bool { return h.sentAtLeast(o, 50) })
	time.Sleep(time.Second)
	var info dispatcher.CampaignInfo
	if code := h.api(d, "PUT", "/api/campaigns/rate-up/rate", operatorToken, map[string]any{"rate_per_second": 400}, &info); code != 200 {
		t.Fatalf("PUT rate: %d", code)
	}
	changed := time.Now()
	if info.RatePerSecond != 400 || info.RateSource != "operator" {
		t.Errorf("after PUT: %+v", info)
	}
	// Sliding one-second windows: the new rate must show within 2s.
	prev := h.sample(o)
	var seen time.Duration
	for time.Since(changed) < 4*time.Second {
		time.Sleep(100 * time.Millisecond)
		cur := h.sample(o)
		if cur.at.Sub(prev.at) >= time.Second {
			r := rateBetween(prev, cur)
			if r >= 360 && seen == 0 {
				seen = cur.at.Sub(changed)
				t.Logf("window ending %v after the change: %.0f/s", seen.Round(time.Millisecond), r)
			}
			prev = cur
		}
	}
	if seen == 0 || seen > 2*time.Second {
		t.Errorf("400/s not visible within 2s of the change (seen after %v)", seen)
	}
	h.control(d, "rate-up", "cancel")
}

// timeToDeliver publishes o on lane and returns how long until the
// simulator accepted all of it.
func (h *harness) timeToDeliver(o synth.Options, lane dispatcher.Lane) time.Duration {
	h.t.Helper()
	start := time.Now()
	h.publish(o, lane)
	testwait.For(h.t, 2*time.Minute, o.Campaign+" delivered", func() bool { return h.sentAtLeast(o, o.Recipients) })
	return time.Since(start)
}

func TestThrottledCampaignDoesNotHoldUpOthers(t *testing.T) {
	// A slow simulator and few workers make the unthrottled campaign take
	// seconds, so that 20% is well above scheduling noise.
	h := newHarness(t, sim.Config{Latency: 20 * time.Millisecond})
	h.withAdmin()
	d := h.start(map[string]string{"PUSHD_APNS_WORKERS": "32", "PUSHD_FCM_WORKERS": "32"})

	// Solo times are measured before and after the throttled campaign
	// runs, so that a busy moment of the machine cannot pass for
	// head-of-line blocking (nor hide it).
	solo := func(tag string) (normal, high time.Duration) {
		normal = h.timeToDeliver(synth.Options{Campaign: "solo-normal-" + tag, Recipients: 5000, IOSPercent: 50}, dispatcher.Normal)
		high = h.timeToDeliver(synth.Options{Campaign: "solo-high-" + tag, Recipients: 3000, IOSPercent: 50, BatchSize: 500}, dispatcher.High)
		return normal, high
	}
	soloNormal1, soloHigh1 := solo("before")

	slow := h.publish(synth.Options{Campaign: "slow", Recipients: 20000, IOSPercent: 50, Rate: 5}, dispatcher.Normal)
	testwait.For(t, 30*time.Second, "slow campaign sending", func() bool { return h.sentAtLeast(slow, 1) })
	withNormal := h.timeToDeliver(synth.Options{Campaign: "fast-normal", Recipients: 5000, IOSPercent: 50}, dispatcher.Normal)
	withHigh := h.timeToDeliver(synth.Options{Campaign: "fast-high", Recipients: 3000, IOSPercent: 50, BatchSize: 500}, dispatcher.High)
	slowSent := h.sent(slow)
	h.control(d, "slow", "pause")

	soloNormal2, soloHigh2 := solo("after")
	soloNormal, soloHigh := max(soloNormal1, soloNormal2), max(soloHigh1, soloHigh2)
	t.Logf("5,000 unthrottled: alone %v and %v, behind a 5/s campaign of 20,000 %v (%.2fx)",
		soloNormal1.Round(time.Millisecond), soloNormal2.Round(time.Millisecond), withNormal.Round(time.Millisecond), withNormal.Seconds()/soloNormal.Seconds())
	t.Logf("3,000 on the high lane: alone %v and %v, with the 5/s campaign running %v (%.2fx)",
		soloHigh1.Round(time.Millisecond), soloHigh2.Round(time.Millisecond), withHigh.Round(time.Millisecond), withHigh.Seconds()/soloHigh.Seconds())
	if withNormal > soloNormal*12/10 {
		t.Errorf("unthrottled campaign took %v behind the throttled one, more than its solo %v + 20%%", withNormal, soloNormal)
	}
	if withHigh > soloHigh*12/10 {
		t.Errorf("high-lane batch took %v with the throttled campaign running, more than its solo %v + 20%%", withHigh, soloHigh)
	}
	if slowSent > 200 {
		t.Errorf("the 5/s campaign sent %d", slowSent)
	}
	h.control(d, "slow", "cancel")
}

func TestCancelStopsSendsWithinASecond(t *testing.T) {
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	o := h.publish(synth.Options{Campaign: "to-cancel", Recipients: 10000, IOSPercent: 50, Rate: 500}, dispatcher.Normal)
	testwait.For(t, 30*time.Second, "sending", func() bool { return h.sentAtLeast(o, 500) })
	info := h.control(d, "to-cancel", "cancel")
	cancelled := time.Now()
	if info.Status != dispatcher.StatusCancelled {
		t.Fatalf("status %s", info.Status)
	}
	atCancel := h.sent(o)
	time.Sleep(time.Second)
	afterOne := h.sample(o)
	time.Sleep(2 * time.Second)
	later := h.sample(o)
	t.Logf("sends: %d at cancel, %d one second later, %d three seconds later", atCancel, afterOne.n, later.n)
	if later.n != afterOne.n {
		t.Errorf("%d sends more than 1s after the cancel", later.n-afterOne.n)
	}
	// Every recipient is accounted for, and the queues end empty.
	testwait.For(t, 30*time.Second, "all recipients accounted for", costly(func() bool {
		c := h.campaign(d, "to-cancel").Counters
		return c.Sent+c.Cancelled == 10000
	}))
	final := h.campaign(d, "to-cancel")
	t.Logf("after cancel: %+v (cancelled %v ago)", final.Counters, time.Since(cancelled).Round(time.Millisecond))
	if final.Counters.Sent != int64(h.sent(o)) {
		t.Errorf("counted %d sent, simulator accepted %d", final.Counters.Sent, h.sent(o))
	}
	campaignQueue := h.top.CampaignQueue("to-cancel")
	testwait.For(t, 30*time.Second, "campaign queue drained and deleted", costly(func() bool {
		return !queuetest.Exists(t, h.url, campaignQueue)
	}))
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	h.lanesEmpty()
}

func TestPauseSurvivesARestartAndResumeDeliversOnce(t *testing.T) {
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	o := h.publish(synth.Options{Campaign: "to-pause", Recipients: 3000, IOSPercent: 50, Rate: 300}, dispatcher.Normal)
	testwait.For(t, 30*time.Second, "sending", func() bool { return h.sentAtLeast(o, 300) })
	if info := h.control(d, "to-pause", "pause"); info.Status != dispatcher.StatusPaused {
		t.Fatalf("status %s", info.Status)
	}
	time.Sleep(500 * time.Millisecond) // sends in flight at the pause finish
	atPause := h.sent(o)
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	d = h.start(nil)
	time.Sleep(2 * time.Second)
	if info := h.campaign(d, "to-pause"); info.Status != dispatcher.StatusPaused {
		t.Errorf("after restart the campaign is %s", info.Status)
	}
	if n := h.sent(o); n != atPause {
		t.Fatalf("%d sends while paused (across a restart)", n-atPause)
	}
	if atPause >= 3000 {
		t.Fatal("campaign finished before the pause; the test proves nothing")
	}
	h.control(d, "to-pause", "resume")
	testwait.For(t, time.Minute, "every recipient delivered", func() bool { return h.sentAtLeast(o, 3000) })
	h.delivered(o, true)
	t.Logf("paused at %d of 3000, restarted, resumed: all delivered once", atPause)
}

func TestAdminAuth(t *testing.T) {
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	h.publish(synth.Options{Campaign: "auth", Recipients: 10, IOSPercent: 50}, dispatcher.Normal)
	testwait.For(t, 30*time.Second, "campaign known", costly(func() bool {
		return h.api(d, "GET", "/api/campaigns/auth", viewerToken, nil, nil) == 200
	}))
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/campaigns", "", 401},
		{"GET", "/api/campaigns", "wrong", 401},
		{"GET", "/api/campaigns", viewerToken, 200},
		{"POST", "/api/campaigns/auth/pause", viewerToken, 403},
		{"POST", "/api/campaigns/nope/pause", operatorToken, 404},
		{"POST", "/api/campaigns/auth/pause", operatorToken, 200},
		{"POST", "/api/campaigns/auth/resume", operatorToken, 200},
	} {
		if got := h.api(d, tc.method, tc.path, tc.token, nil, nil); got != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, tc.token, got, tc.want)
		}
	}
	if got := h.api(d, "PUT", "/api/campaigns/auth/rate", operatorToken, map[string]any{"rate_per_second": -3}, nil); got != 400 {
		t.Errorf("negative rate: %d", got)
	}
	var list struct {
		Campaigns []dispatcher.CampaignInfo `json:"campaigns"`
	}
	h.api(d, "GET", "/api/campaigns", viewerToken, nil, &list)
	if len(list.Campaigns) != 1 || list.Campaigns[0].ID != "auth" {
		t.Errorf("list %+v", list)
	}
}
