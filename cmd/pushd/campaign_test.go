package main

// End-to-end tests of throttling and campaign control through the admin
// API, against the real RabbitMQ and the simulator.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/internal/testwait"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/queue/queuetest"
)

const (
	operatorToken = "op-secret-token-0123456789ab"
	viewerToken   = "view-secret-token-0123456789"
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

// audited returns the actions of the audit log's records of target,
// oldest first, and checks that the operator made them: the dispatcher
// hands each change to the store with its audit note, and the store
// writes the record in the change's transaction.
func (h *harness) audited(d *daemon, target string) []string {
	h.t.Helper()
	var page struct {
		Entries []struct {
			Action string `json:"action"`
			Actor  string `json:"actor"`
		} `json:"entries"`
	}
	if code := h.api(d, "GET", "/api/audit?target="+url.QueryEscape(target), operatorToken, nil, &page); code != 200 {
		h.t.Fatalf("GET /api/audit: %d", code)
	}
	var out []string
	for i := len(page.Entries) - 1; i >= 0; i-- {
		e := page.Entries[i]
		if !strings.HasPrefix(e.Actor, "operator:") {
			h.t.Errorf("record %s by %q, want the operator's token", e.Action, e.Actor)
		}
		out = append(out, e.Action)
	}
	return out
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

// sample is a count of sends and when it was read.
type sample struct {
	at time.Time
	n  int
}

func (h *harness) sample(o synth.Options) sample { return sample{time.Now(), h.sent(o)} }

func rateBetween(a, b sample) float64 { return float64(b.n-a.n) / b.at.Sub(a.at).Seconds() }

// allows returns the most tokens a bucket of perSecond and burst can hand
// out in d: burst at once, then perSecond.
func allows(perSecond float64, burst int, d time.Duration) float64 {
	return perSecond*d.Seconds() + float64(burst)
}

// watchSends looks at count until done says so, and fails the test if,
// at any look, count is above limit. limit gets the time read after
// count, the later the looser: a throttle that works never fails it,
// however slow the machine. It returns the last look.
func (h *harness) watchSends(what string, within time.Duration, count func() int, limit func(at time.Time) float64, done func(sample) bool) sample {
	h.t.Helper()
	var last sample
	testwait.For(h.t, within, what, func() bool {
		n := count()
		at := time.Now()
		if lim := limit(at); float64(n) > lim {
			h.t.Fatalf("%d sends, more than the %.0f the limit allows by now (waiting for %s)", n, lim, what)
		}
		last = sample{at, n}
		return done(last)
	})
	return last
}

// reaches is a done for watchSends: count reached n.
func reaches(n int) func(sample) bool { return func(s sample) bool { return s.n >= n } }

// TestCampaignRateIsKept checks that a campaign's rate holds as a token
// bucket does, and that the campaign keeps sending. The exact rate is for
// ratelimit's tests, on a fake clock.
func TestCampaignRateIsKept(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	const rate, burst = 100, 10 // burst: ratelimit.DefaultBurst(100)
	// No token of the campaign can be taken before it is published: by any
	// time, it cannot have sent more than the bucket allows since then.
	// Every request to the simulator took a token.
	published := time.Now()
	limit := func(at time.Time) float64 { return allows(rate, burst, at.Sub(published)) }
	reqs := func() int { return requests(h.sim) }
	h.publish(synth.Options{Campaign: "rate-100", Recipients: 3000, IOSPercent: 50, Rate: rate}, dispatcher.Normal)
	first := h.watchSends("sending started", 30*time.Second, reqs, limit, reaches(20))
	last := h.watchSends("300 sends more", time.Minute, reqs, limit, reaches(first.n+300))
	t.Logf("campaign at 100/s: %d sends in %v = %.1f/s; at most %.0f allowed %v after publishing",
		last.n-first.n, last.at.Sub(first.at).Round(time.Millisecond), rateBetween(first, last), limit(last.at), last.at.Sub(published).Round(time.Millisecond))
	info := h.campaign(d, "rate-100")
	if info.RatePerSecond != 100 || info.RateSource != "message" || info.Status != dispatcher.StatusRunning {
		t.Errorf("campaign info %+v", info)
	}
	h.control(d, "rate-100", "cancel")
}

// TestRaisingTheRateSpeedsUpSending raises a campaign's rate through the
// API mid-campaign: the sends then pass what the old rate could have
// allowed, and stay within what the new one allows.
func TestRaisingTheRateSpeedsUpSending(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	const oldRate, oldBurst, newRate, newBurst = 100, 10, 400, 40
	published := time.Now()
	oldLimit := func(at time.Time) float64 { return allows(oldRate, oldBurst, at.Sub(published)) }
	reqs := func() int { return requests(h.sim) }
	h.publish(synth.Options{Campaign: "rate-up", Recipients: 8000, IOSPercent: 50, Rate: oldRate}, dispatcher.Normal)
	h.watchSends("sending started", 30*time.Second, reqs, oldLimit, reaches(50))

	asked := time.Now()
	atAsk := reqs()
	var info dispatcher.CampaignInfo
	if code := h.api(d, "PUT", "/api/campaigns/rate-up/rate", operatorToken, map[string]any{"rate_per_second": newRate}, &info); code != 200 {
		t.Fatalf("PUT rate: %d", code)
	}
	changed := time.Now()
	if info.RatePerSecond != newRate || info.RateSource != "operator" {
		t.Errorf("after PUT: %+v", info)
	}
	// The old rate until the answer, the new one from the question on.
	limit := func(at time.Time) float64 {
		return allows(oldRate, 0, changed.Sub(published)) + allows(newRate, newBurst, at.Sub(asked))
	}
	passed := h.watchSends("sends past what the old rate allows", 30*time.Second, reqs, limit, func(s sample) bool {
		return float64(s.n) > oldLimit(s.at)
	})
	t.Logf("rate raised from %d/s to %d/s at %d sends: past what %d/s allows %v after the answer",
		oldRate, newRate, atAsk, oldRate, passed.at.Sub(changed).Round(time.Millisecond))
	last := h.watchSends("400 sends more", time.Minute, reqs, limit, reaches(passed.n+newRate))
	t.Logf("then %.0f/s over %v", rateBetween(passed, last), last.at.Sub(passed.at).Round(time.Millisecond))
	h.control(d, "rate-up", "cancel")
}

// timeToDeliver publishes o on lane and returns how long until the
// simulator accepted all of it; it fails the test after within.
func (h *harness) timeToDeliver(o synth.Options, lane dispatcher.Lane, within time.Duration) time.Duration {
	h.t.Helper()
	start := time.Now()
	h.publish(o, lane)
	testwait.For(h.t, within, o.Campaign+" delivered", func() bool { return h.sentAtLeast(o, o.Recipients) })
	return time.Since(start)
}

// TestThrottledCampaignDoesNotHoldUpOthers runs unthrottled campaigns, on
// both lanes, behind a campaign throttled to 5/s: they are delivered while
// the throttled one keeps to its bucket.
func TestThrottledCampaignDoesNotHoldUpOthers(t *testing.T) {
	t.Parallel()
	// A slow simulator and few workers, so that sends take time and
	// workers are scarce.
	h := newHarness(t, sim.Config{Latency: 20 * time.Millisecond})
	h.withAdmin()
	d := h.start(map[string]string{"PUSHD_APNS_WORKERS": "32", "PUSHD_FCM_WORKERS": "32"})

	const slowRate, slowBurst = 5, 1
	published := time.Now()
	slow := h.publish(synth.Options{Campaign: "slow", Recipients: 20000, IOSPercent: 50, Rate: slowRate}, dispatcher.Normal)
	testwait.For(t, 30*time.Second, "slow campaign sending", func() bool { return accepted(h.sim) > 0 })
	// A campaign held up behind the throttled one would wait for at least
	// one of its batches: 1,000 recipients at 5/s, 200 s. Alone, each of
	// these takes a few seconds.
	const heldUp = 100 * time.Second
	withNormal := h.timeToDeliver(synth.Options{Campaign: "fast-normal", Recipients: 5000, IOSPercent: 50}, dispatcher.Normal, heldUp)
	withHigh := h.timeToDeliver(synth.Options{Campaign: "fast-high", Recipients: 3000, IOSPercent: 50, BatchSize: 500}, dispatcher.High, heldUp)
	slowSent := h.sent(slow)
	at := time.Now()
	h.control(d, "slow", "cancel")
	t.Logf("behind a 5/s campaign of 20,000: 5,000 unthrottled delivered in %v, 3,000 on the high lane in %v",
		withNormal.Round(time.Millisecond), withHigh.Round(time.Millisecond))
	allowed := allows(slowRate, slowBurst, at.Sub(published))
	t.Logf("the 5/s campaign sent %d meanwhile, its bucket allowing %.0f", slowSent, allowed)
	if float64(slowSent) > allowed {
		t.Errorf("the 5/s campaign sent %d in %v, more than its bucket allows (%.0f)", slowSent, at.Sub(published).Round(time.Millisecond), allowed)
	}
	if slowSent == 0 {
		t.Error("the 5/s campaign sent nothing meanwhile")
	}
}

// TestCancelStartsNoSendAfterItsAnswer: once the cancel is answered, no
// send of the campaign starts; those in flight finish.
func TestCancelStartsNoSendAfterItsAnswer(t *testing.T) {
	t.Parallel()
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
	// Sends in flight at the answer finish (senders skip the queued jobs of
	// a cancelled campaign): at most info.InFlight more.
	testwait.For(t, 30*time.Second, "sends in flight finished", costly(func() bool {
		return h.campaign(d, "to-cancel").InFlight == 0
	}))
	settled := h.sample(o)
	// An observation window: nothing more is sent in the next 2 s.
	time.Sleep(2 * time.Second)
	later := h.sample(o)
	t.Logf("sends: %d at cancel (%d in flight), %d once those finished (%v after the answer), %d 2s later",
		atCancel, info.InFlight, settled.n, settled.at.Sub(cancelled).Round(time.Millisecond), later.n)
	if more := int64(settled.n - atCancel); more > info.InFlight {
		t.Errorf("%d sends after the cancel, more than the %d in flight at its answer", more, info.InFlight)
	}
	if later.n != settled.n {
		t.Errorf("%d sends after those in flight finished", later.n-settled.n)
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
	h.countersAddUp()
}

// campaignPrefetch is how many deliveries of a campaign's queue pushd
// handles at once; each may hold a token it has not yet counted in flight.
const campaignPrefetch = 2

func TestPauseSurvivesARestartAndResumeDeliversOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	o := h.publish(synth.Options{Campaign: "to-pause", Recipients: 3000, IOSPercent: 50, Rate: 300}, dispatcher.Normal)
	testwait.For(t, 30*time.Second, "sending", func() bool { return h.sentAtLeast(o, 300) })
	info := h.control(d, "to-pause", "pause")
	if info.Status != dispatcher.StatusPaused {
		t.Fatalf("status %s", info.Status)
	}
	atAnswer := h.sent(o)
	// Sends in flight at the pause finish.
	testwait.For(t, 30*time.Second, "sends in flight finished", costly(func() bool {
		return h.campaign(d, "to-pause").InFlight == 0
	}))
	atPause := h.sent(o)
	if more := int64(atPause - atAnswer); more > info.InFlight+campaignPrefetch {
		t.Errorf("%d sends after the pause, more than the %d in flight at its answer", more, info.InFlight)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	d = h.start(nil)
	if info := h.campaign(d, "to-pause"); info.Status != dispatcher.StatusPaused {
		t.Errorf("after restart the campaign is %s", info.Status)
	}
	// An observation window: the restarted pushd, ready and consuming,
	// sends nothing of the paused campaign for 2 s.
	time.Sleep(2 * time.Second)
	if n := h.sent(o); n != atPause {
		t.Fatalf("%d sends while paused (across a restart)", n-atPause)
	}
	if atPause >= 3000 {
		t.Fatal("campaign finished before the pause; the test proves nothing")
	}
	h.control(d, "to-pause", "resume")
	testwait.For(t, time.Minute, "every recipient delivered", func() bool { return h.sentAtLeast(o, 3000) })
	h.delivered(o, true)
	if got := h.audited(d, "to-pause"); strings.Join(got, " ") != "campaign.pause campaign.resume" {
		t.Errorf("audit log of the campaign: %v, want the pause and the resume", got)
	}
	t.Logf("paused at %d of 3000 (%d in flight at the answer), restarted, resumed: all delivered once", atPause, info.InFlight)
	h.countersAddUp()
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
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
