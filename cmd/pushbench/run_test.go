package main

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/queue"
	"github.com/pushd/pushd/queue/queuetest"
)

func TestParseFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	c, err := parseFlags(nil, noEnv, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	want := config{n: 100000, rounds: 3, concurrency: 256, pushd: "./bin/pushd", pushsim: "./bin/pushsim",
		amqpURL: "amqp://guest:guest@127.0.0.1:5672/", timeout: 5 * time.Minute, profileFor: 10 * time.Second}
	if *c != want {
		t.Errorf("defaults %+v, want %+v", *c, want)
	}
	c, err = parseFlags([]string{"-only", "pushd"}, func(k string) string {
		return map[string]string{"PUSHD_AMQP_URL": "amqp://u:p@rabbit:5672/v"}[k]
	}, &bytes.Buffer{})
	if err != nil || c.amqpURL != "amqp://u:p@rabbit:5672/v" || c.only != pushd {
		t.Errorf("got %+v, %v", c, err)
	}
	for _, tc := range []struct {
		args       []string
		contenders []string
		settings   string
	}{
		{nil, []string{bare, pushd}, ""},
		{[]string{"-only", "bare"}, []string{bare}, " -only bare"},
		{[]string{"-blacklist", "1000000"}, []string{bare, pushd, pushdBlacklist}, " -blacklist 1000000"},
		{[]string{"-blacklist", "1000", "-only", "pushd+blacklist"}, []string{pushdBlacklist}, " -only pushd+blacklist -blacklist 1000"},
		{[]string{"-store-dsn", "postgres://pushd:pw@db/pushd"}, []string{bare, pushd}, " -store-dsn postgres://pushd:xxxxx@db/pushd"},
	} {
		c, err := parseFlags(tc.args, noEnv, &bytes.Buffer{})
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if got := c.contenders(); !slices.Equal(got, tc.contenders) {
			t.Errorf("%q: contenders %v, want %v", tc.args, got, tc.contenders)
		}
		if got := settings(c); !strings.HasSuffix(got, "-amqp-url amqp://guest:xxxxx@127.0.0.1:5672/"+tc.settings) {
			t.Errorf("%q: settings %q, want it to end with %q", tc.args, got, tc.settings)
		}
	}
	for _, args := range [][]string{
		{"-n", "0"}, {"-rounds", "0"}, {"-concurrency", "0"}, {"-latency", "-1ms"},
		{"-timeout", "0"}, {"-only", "gorush"}, {"extra"}, {"-bogus"},
		{"-blacklist", "-1"}, {"-blacklist", "x"}, {"-only", "pushd+blacklist"},
		{"-only", "pushd", "-blacklist", "10"}, {"-only", "bare", "-blacklist", "10"},
		{"-blacklist", "10", "-store-dsn", "postgres://db/pushd"},
		{"-profile", "p", "-profile-for", "500ms"},
	} {
		if _, err := parseFlags(args, noEnv, &bytes.Buffer{}); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestRunFailsWithoutBinaries(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"-pushsim", "/nonexistent/pushsim"}, func(string) string { return "" }, &out)
	if err == nil || !strings.Contains(err.Error(), "scripts/build.sh") {
		t.Fatalf("got %v", err)
	}
}

func TestOrderRotates(t *testing.T) {
	two := []string{bare, pushd}
	for i, want := range [][]string{{bare, pushd}, {pushd, bare}, {bare, pushd}} {
		if got := order(i+1, two); !slices.Equal(got, want) {
			t.Errorf("two contenders, round %d: %v, want %v", i+1, got, want)
		}
	}
	three := []string{bare, pushd, pushdBlacklist}
	for i, want := range [][]string{
		{bare, pushd, pushdBlacklist},
		{pushd, pushdBlacklist, bare},
		{pushdBlacklist, bare, pushd},
		{bare, pushd, pushdBlacklist},
	} {
		if got := order(i+1, three); !slices.Equal(got, want) {
			t.Errorf("three contenders, round %d: %v, want %v", i+1, got, want)
		}
	}
	if !slices.Equal(three, []string{bare, pushd, pushdBlacklist}) {
		t.Errorf("order changed its argument: %v", three)
	}
	if got := order(2, []string{bare}); !slices.Equal(got, []string{bare}) {
		t.Errorf("-only bare: %v", got)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"-n", "100000", "-amqp-url", "amqp://g:g@h:5672/", "-pushd", "my pushd", "it's", ""})
	want := `-n 100000 -amqp-url amqp://g:g@h:5672/ -pushd 'my pushd' 'it'\''s' ''`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestPushdEnv(t *testing.T) {
	b := &bench{cfg: &config{amqpURL: "amqp://x"}, sim: &simulator{url: "https://127.0.0.1:1", caFile: "/ca.pem"}}
	top, _ := benchTopology()
	env, metricsAddr, err := b.pushdEnv(top, "/tmp/x")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
		switch k {
		case "PUSHD_METRICS_ADDR":
			if v != metricsAddr {
				t.Errorf("PUSHD_METRICS_ADDR=%s, but pushdEnv returned %s", v, metricsAddr)
			}
		case "PUSHD_STORE_DSN":
			if v != "/tmp/x/"+pushdStoreFile {
				t.Errorf("PUSHD_STORE_DSN=%s", v)
			}
		}
	}
	if !slices.Equal(keys, pushdSetKeys) {
		t.Errorf("pushdEnv sets %v\npushdSetKeys lists %v", keys, pushdSetKeys)
	}

	got := inheritedPushdEnv([]string{"HOME=/root", "PUSHD_APNS_WORKERS=512", "PUSHD_AMQP_URL=amqp://a",
		"PUSHD_X_URL=postgres://u:secret@db/x", "PUSHD_APNS_CONNECTIONS=4"})
	want := []string{"PUSHD_APNS_CONNECTIONS=4", "PUSHD_APNS_WORKERS=512", "PUSHD_X_URL=postgres://u:xxxxx@db/x"}
	if !slices.Equal(got, want) {
		t.Errorf("inherited %v, want %v", got, want)
	}
}

func TestTail(t *testing.T) {
	tl := &tail{max: 10}
	for _, s := range []string{"line 1\n", "line 2\n", "line 3\n"} {
		_, _ = tl.Write([]byte(s))
	}
	if got := tl.excerpt(); got != "\n\t2\n\tline 3" {
		t.Errorf("excerpt %q", got)
	}
	if got := (&tail{max: 10}).excerpt(); got != "" {
		t.Errorf("empty excerpt %q", got)
	}
}

// TestCampaignTopologyIsDeleted publishes a small campaign to a fresh
// topology on the real RabbitMQ and checks deleteTopology leaves nothing.
func TestCampaignTopologyIsDeleted(t *testing.T) {
	url := queuetest.URL(t)
	top, campaign := benchTopology()
	p, err := queue.DialProducer(url, top)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deleteTopology(url, top, campaign) })
	err = publishCampaign(t.Context(), p, campaign, 2500, 0)
	_ = p.Close()
	if err != nil {
		t.Fatal(err)
	}
	lanes, dead, err := queueCounts(url, top)
	if err != nil || lanes != 3 || dead != 0 {
		t.Fatalf("after publishing 2500 recipients: %d batches in the lanes, %d dead, %v; want 3, 0", lanes, dead, err)
	}
	if err := deleteTopology(url, top, campaign); err != nil {
		t.Fatal(err)
	}
	if err := deleteTopology(url, top, campaign); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range append(top.Queues(), top.Exchanges()...) {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		var qerr error
		if slices.Contains(top.Exchanges(), q) {
			qerr = ch.ExchangeDeclarePassive(q, "direct", true, false, false, false, nil)
		} else {
			_, qerr = ch.QueueDeclarePassive(q, true, false, false, false, nil)
		}
		// 404 when gone; anything else (406 for another exchange kind)
		// means it is there.
		var ae *amqp.Error
		if !errors.As(qerr, &ae) || ae.Code != amqp.NotFound {
			t.Errorf("%s still exists (%v)", q, qerr)
			_ = ch.Close()
		}
	}
}

func TestBuildTagsReadsTheBinarysBuildInfo(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildTags(exe); err != nil {
		t.Errorf("buildTags(test binary): %v", err)
	}
	if _, err := buildTags("run_test.go"); err == nil {
		t.Error("buildTags(a source file) gave no error")
	}
}
