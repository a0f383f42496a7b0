package sim

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sideshow/apns2"
)

func TestCountsTokensAndStats(t *testing.T) {
	b := setup(t, Config{TrackTokens: true})
	for range 3 {
		if res := push(t, b.apns, &apns2.Notification{DeviceToken: goodToken}); res.StatusCode != 200 {
			t.Fatalf("status = %d %s, want 200", res.StatusCode, res.Reason)
		}
	}
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken2})
	push(t, b.apns, &apns2.Notification{DeviceToken: goneToken})

	for tok, want := range map[string]int{goodToken: 3, goodToken2: 1, goneToken: 1, "unknown": 0} {
		if got := b.sim.Count(tok); got != want {
			t.Errorf("Count(%.8s) = %d, want %d", tok, got, want)
		}
	}
	tokens := b.sim.Tokens()
	if len(tokens) != 2 || tokens[goodToken] != 3 || tokens[goodToken2] != 1 {
		t.Errorf("Tokens() = %v, want the two good tokens with 3 and 1", tokens)
	}
	tokens[goodToken] = 100 // a copy: must not change the simulator
	if b.sim.Tokens()[goodToken] != 3 {
		t.Error("Tokens() returned the simulator's own map")
	}
	st := b.sim.Stats()
	if st.APNs.Requests != 5 || st.APNs.Accepted != 4 {
		t.Errorf("APNs requests/accepted = %d/%d, want 5/4", st.APNs.Requests, st.APNs.Accepted)
	}
	if st.APNs.Results["200"] != 4 || st.APNs.Results["410 Unregistered"] != 1 || len(st.APNs.Results) != 2 {
		t.Errorf("APNs results = %v", st.APNs.Results)
	}
	if st.Tokens != 3 || st.Duplicates != 1 {
		t.Errorf("Tokens/Duplicates = %d/%d, want 3/1", st.Tokens, st.Duplicates)
	}
	if st.FCM.Requests != 0 {
		t.Errorf("FCM requests = %d, want 0", st.FCM.Requests)
	}
	if got := counterValue(t, b.reg, "pushsim_requests_total", "200", "apns", "ok"); got != 4 {
		t.Errorf("pushsim_requests_total{apns,200,ok} = %v, want 4", got)
	}
	if got := counterValue(t, b.reg, "pushsim_requests_total", "410", "apns", "Unregistered"); got != 1 {
		t.Errorf("pushsim_requests_total{apns,410,Unregistered} = %v, want 1", got)
	}

	b.sim.Reset()
	st = b.sim.Stats()
	if st.APNs.Requests != 0 || len(st.APNs.Results) != 0 || st.Tokens != 0 || st.Duplicates != 0 || b.sim.Count(goodToken) != 0 {
		t.Errorf("after Reset: stats %+v, count %d", st, b.sim.Count(goodToken))
	}
}

func TestTokensNotTrackedByDefault(t *testing.T) {
	b := setup(t, Config{})
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	if got := b.sim.Count(goodToken); got != 0 {
		t.Errorf("Count = %d without TrackTokens, want 0", got)
	}
	if st := b.sim.Stats(); st.APNs.Accepted != 1 || st.Tokens != 0 {
		t.Errorf("stats = %+v, want 1 accepted and no tokens", st)
	}
}

func TestWaitAccepted(t *testing.T) {
	b := setup(t, Config{})
	const n = 20
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, err := b.apns.Push(&apns2.Notification{DeviceToken: goodToken, Payload: []byte(`{"aps":{}}`)})
			if err == nil && res.StatusCode != 200 {
				err = errors.New(res.Reason)
			}
			errs <- err
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.sim.WaitAccepted(ctx, n); err != nil {
		t.Fatalf("WaitAccepted(%d): %v", n, err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("push: %v", err)
		}
	}

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := b.sim.WaitAccepted(short, n+1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitAccepted(%d) with nothing more sent = %v, want deadline exceeded", n+1, err)
	}
	if err := b.sim.WaitAccepted(context.Background(), n); err != nil {
		t.Fatalf("WaitAccepted of a reached count: %v", err)
	}
	if b.sim.nWaiters.Load() != 0 || len(b.sim.waiters) != 0 {
		t.Errorf("waiters left behind: %d", b.sim.nWaiters.Load())
	}
}

func TestWaitAcceptedWakesOnLaterSend(t *testing.T) {
	b := setup(t, Config{})
	done := make(chan error, 1)
	go func() { done <- b.sim.WaitAccepted(context.Background(), 2) }()
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	select {
	case err := <-done:
		t.Fatalf("WaitAccepted(2) returned after 1 send: %v", err)
	default:
	}
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitAccepted: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitAccepted(2) still blocked after 2 sends")
	}
}

func TestRecordedKeepsLastN(t *testing.T) {
	b := setup(t, Config{RecordLast: 2})
	for i, tok := range []string{goodToken, goodToken2, goneToken} {
		push(t, b.apns, &apns2.Notification{DeviceToken: tok, Topic: "com.example.app", Payload: []byte(`{"aps":{"badge":` + string(rune('1'+i)) + `}}`)})
	}
	rec := b.sim.Recorded(APNs)
	if len(rec) != 2 {
		t.Fatalf("Recorded = %d requests, want 2", len(rec))
	}
	if rec[0].Token != goodToken2 || rec[1].Token != goneToken {
		t.Errorf("Recorded tokens = %.8s, %.8s; want the last two, oldest first", rec[0].Token, rec[1].Token)
	}
	if got := rec[1].Header.Get("apns-topic"); got != "com.example.app" {
		t.Errorf("recorded apns-topic = %q", got)
	}
	if !bytes.Equal(rec[1].Body, []byte(`{"aps":{"badge":3}}`)) || rec[1].Provider != APNs || rec[1].At.IsZero() {
		t.Errorf("recorded request = %+v", rec[1])
	}
	if got := b.sim.Recorded(FCM); len(got) != 0 {
		t.Errorf("Recorded(fcm) = %d requests, want 0", len(got))
	}
	if got := b.sim.Recorded("gcm"); got != nil {
		t.Errorf("Recorded(unknown) = %v, want nil", got)
	}
	b.sim.SetConfig(Config{RecordLast: 1})
	if rec := b.sim.Recorded(APNs); len(rec) != 1 || rec[0].Token != goneToken {
		t.Errorf("after shrinking to 1: %d recorded, want the newest", len(rec))
	}
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	if rec := b.sim.Recorded(APNs); len(rec) != 1 || rec[0].Token != goodToken {
		t.Errorf("after one more push: %d recorded", len(rec))
	}
	b.sim.SetConfig(Config{})
	if rec := b.sim.Recorded(APNs); len(rec) != 0 {
		t.Errorf("after turning recording off: %d recorded", len(rec))
	}
}

func TestCountsRequestsThatIgnoreRetryAfter(t *testing.T) {
	b := setup(t, Config{TrackTokens: true, RetryAfter: 1500 * time.Millisecond,
		APNsErrors: ErrorMix{TooMany: 1}})
	if res := push(t, b.apns, &apns2.Notification{DeviceToken: goodToken}); res.StatusCode != 429 {
		t.Fatalf("status %d, want 429", res.StatusCode)
	}
	// Retry-After: 2 (1.5s rounded up). Asking again at once ignores it.
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken})
	if got := b.sim.Stats().RetryAfterIgnored; got != 1 {
		t.Fatalf("RetryAfterIgnored %d after an immediate retry, want 1", got)
	}
	// Another token is not held by the first one's Retry-After.
	push(t, b.apns, &apns2.Notification{DeviceToken: goodToken2})
	if got := b.sim.Stats().RetryAfterIgnored; got != 1 {
		t.Fatalf("RetryAfterIgnored %d, want still 1", got)
	}
	b.sim.Reset()
	if got := b.sim.Stats().RetryAfterIgnored; got != 0 {
		t.Errorf("RetryAfterIgnored %d after Reset", got)
	}
}
