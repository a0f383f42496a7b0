package admin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/scheduler"
	"github.com/pushd/pushd/store"
)

// BenchmarkConsolePages measures how long each page takes at the server
// with the real store (SQLite in a temporary directory) holding 100
// audiences, 1,000 campaigns (500 created in the console, half of them
// running with counters, and 500 from AMQP), their audit records, 10,000
// blacklist entries and 50 users. The target is 50 ms a page (issue 12);
// docs/console.md has the figures.
//
//	go test -run '^$' -bench ConsolePages -benchtime 20x ./admin/
func BenchmarkConsolePages(b *testing.B) {
	cb := setupConsole(b, slog.New(slog.NewTextHandler(io.Discard, nil)), func(cfg *Config, st *store.Store) {
		cfg.Users = storeUserList{newFakeUsers(time.Now), st}
	})
	ctx := context.Background()
	for i := range 50 {
		u := store.User{Name: fmt.Sprintf("user-%02d", i), Role: []string{"viewer", "operator", "admin"}[i%3], PasswordHash: "$2a$10$bench"}
		if _, err := cb.st.CreateUser(ctx, u, "admin:bench"); err != nil {
			b.Fatal(err)
		}
	}
	var audiences []Audience
	for i := range 100 {
		audiences = append(audiences, cb.addAudience(b, fmt.Sprintf("aud-%03d", i), 20))
	}
	counters := map[string]dispatcher.Counters{}
	for i := range 500 {
		cb.clock.Add(time.Second)
		id := fmt.Sprintf("console-%04d", i)
		d := scheduler.Definition{ID: id, Name: "Campaign " + id, TimeZone: "Asia/Seoul", AudienceID: audiences[i%100].ID,
			Notification: []byte(`{"title":"세일 🎉","body":"오늘만 50% 할인","data":{"deeplink":"app://sale"}}`), RatePerSecond: 100}
		if _, err := cb.st.CreateCampaignDef(ctx, d, "operator:bench"); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := cb.st.EnsureCampaign(ctx, id, 100); err != nil {
				b.Fatal(err)
			}
			counters[id] = dispatcher.Counters{Received: 20, Sent: 15, Filtered: 1}
		}
		amqp := fmt.Sprintf("amqp-%04d", i)
		if _, err := cb.st.EnsureCampaign(ctx, amqp, 50); err != nil {
			b.Fatal(err)
		}
		counters[amqp] = dispatcher.Counters{Received: 1000, Sent: 990, Failed: 10}
	}
	if err := cb.st.AddCampaignCounters(ctx, counters); err != nil {
		b.Fatal(err)
	}
	entries := make([]lists.Entry, 10000)
	for i := range entries {
		entries[i] = lists.Entry{List: lists.Blacklist, Kind: lists.User, Value: fmt.Sprintf("u-%05d", i), Reason: "opt-out"}
	}
	if _, err := cb.st.ImportList(ctx, lists.Blacklist, entries, false); err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{
		"/campaigns", "/campaigns?page=10", "/campaign/console-0498", "/campaign/console-0498/progress", "/campaign/amqp-0250",
		"/campaigns/new", "/campaign/console-0499/edit", "/audiences", "/lists/blacklist", "/lists/blacklist?q=u-05",
		"/lists/whitelist", "/audit", "/audit?action=campaign.create&target=console-0100", "/users",
	} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			if w := cb.get(path, adminToken); w.Code != http.StatusOK {
				b.Fatalf("%s: %d %s", path, w.Code, w.Body.String())
			}
			var worst time.Duration
			cpu := cpuTime(b)
			for b.Loop() {
				start := time.Now()
				w := cb.get(path, adminToken)
				worst = max(worst, time.Since(start))
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d", path, w.Code)
				}
			}
			// On a shared machine the time a page takes depends on the
			// others; the CPU it takes much less.
			b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// storeUserList is a UserStore whose users are the store's: the users page
// reads nothing else of it (the benchmark signs in with a token).
type storeUserList struct {
	*fakeUsers
	st *store.Store
}

func (u storeUserList) Users(ctx context.Context) ([]User, error) {
	us, err := u.st.Users(ctx)
	out := make([]User, len(us))
	for i, x := range us {
		out[i] = User(x)
	}
	return out, err
}
