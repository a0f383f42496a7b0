package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push/apns"
	"github.com/pushd/pushd/push/fcm"
	"github.com/pushd/pushd/push/sim"
)

// TestBarePushesWhatPushdPushes checks that the bare client sends the
// request pushd's APNs sender sends for the benchmark notification: same
// payload, byte for byte, and same apns-* headers.
func TestBarePushesWhatPushdPushes(t *testing.T) {
	s := startSim(t, sim.Config{RecordLast: 2})
	ctx := t.Context()

	// The notification as pushd gets it: out of a published batch.
	o := synth.Options{Campaign: "payload", Recipients: 1, IOSPercent: 100, Notification: benchNotification()}
	var batch dispatcher.Batch
	for b := range o.Batches() {
		body, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			t.Fatal(err)
		}
	}
	sender, err := apns.New(apns.Config{Host: s.URL(), RootCAs: s.CertPool()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	msg, err := sender.Prepare(&batch.Notification)
	if err != nil {
		t.Fatal(err)
	}
	if r := msg.Send(ctx, &batch.Recipients[0]); r.Outcome != dispatcher.Sent {
		t.Fatalf("pushd's sender: %+v", r)
	}

	bc, err := newBareClient(s.URL(), s.CertPool())
	if err != nil {
		t.Fatal(err)
	}
	defer bc.close()
	if err := bc.push(ctx, randomTokens(1), 1); err != nil {
		t.Fatal(err)
	}

	rec := s.Recorded(sim.APNs)
	if len(rec) != 2 {
		t.Fatalf("%d requests recorded, want 2", len(rec))
	}
	pushd, bare := rec[0], rec[1]
	if string(pushd.Body) != string(benchPayload) {
		t.Errorf("pushd sends %s\nbenchPayload is %s", pushd.Body, benchPayload)
	}
	if string(bare.Body) != string(pushd.Body) {
		t.Errorf("bare client sends %s\npushd sends %s", bare.Body, pushd.Body)
	}
	for _, h := range []string{"Apns-Priority", "Apns-Push-Type", "Apns-Topic", "Apns-Expiration", "Apns-Collapse-Id", "Apns-Id", "Content-Type", "Authorization"} {
		if b, p := bare.Header.Get(h), pushd.Header.Get(h); b != p {
			t.Errorf("%s: bare client sends %q, pushd %q", h, b, p)
		}
	}
}

func TestRandomTokens(t *testing.T) {
	toks := randomTokens(1000)
	seen := map[string]bool{}
	for _, tok := range toks {
		if len(tok) != 64 || seen[tok] {
			t.Fatalf("token %q: bad length or repeated", tok)
		}
		seen[tok] = true
	}
}

// TestBareRole runs pushbench in the role runBare starts it in: it pushes
// everything, then waits for SIGTERM (here, the end of ctx) and succeeds.
func TestBareRole(t *testing.T) {
	s := startSim(t, sim.Config{})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PUSHBENCH_ROLE": bareRole}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	const n = 500
	go func() {
		done <- run(ctx, []string{"-sim", s.URL(), "-ca", ca, "-n", strconv.Itoa(n), "-concurrency", "8"},
			func(k string) string { return env[k] }, &testWriter{t})
	}()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := s.WaitAccepted(wctx, n); err != nil {
		t.Fatalf("accepted %d of %d: %v", s.Stats().APNs.Accepted, n, err)
	}
	select {
	case err := <-done:
		t.Fatalf("returned before SIGTERM: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
	if st := s.Stats().APNs; st.Requests != n || st.Accepted != n {
		t.Errorf("simulator: %d requests, %d accepted; want %d", st.Requests, st.Accepted, n)
	}

	if err := run(t.Context(), []string{"-n", "0"}, func(k string) string { return env[k] }, &testWriter{t}); err == nil {
		t.Error("no error for bad arguments")
	}
}

// testWriter sends output to t.Log.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// TestBareFCMSendsWhatPushdSends checks that the bare firebase client
// sends the message pushd's FCM sender sends for the benchmark
// notification: the same JSON but for the token.
func TestBareFCMSendsWhatPushdSends(t *testing.T) {
	s := startSim(t, sim.Config{RecordLast: 2})
	ctx := t.Context()
	n := benchNotification()
	sender, err := fcm.New(ctx, fcm.Config{Endpoint: s.URL() + "/v1", ProjectID: "pushbench", RootCAs: s.CertPool()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	msg, err := sender.Prepare(&n)
	if err != nil {
		t.Fatal(err)
	}
	tokens := randomTokens(2)
	if r := msg.Send(ctx, &dispatcher.Recipient{Platform: dispatcher.Android, Token: tokens[0]}); r.Outcome != dispatcher.Sent {
		t.Fatalf("pushd's sender: %+v", r)
	}
	bf, err := newBareFCM(ctx, s.URL(), s.CertPool())
	if err != nil {
		t.Fatal(err)
	}
	if err := bf.push(ctx, tokens[1:], 1); err != nil {
		t.Fatal(err)
	}
	rec := s.Recorded(sim.FCM)
	if len(rec) != 2 {
		t.Fatalf("%d requests recorded, want 2", len(rec))
	}
	pushd := strings.Replace(string(rec[0].Body), tokens[0], "TOKEN", 1)
	bare := strings.Replace(string(rec[1].Body), tokens[1], "TOKEN", 1)
	if bare != pushd {
		t.Errorf("bare firebase client sends %s\npushd sends %s", bare, pushd)
	}
}
