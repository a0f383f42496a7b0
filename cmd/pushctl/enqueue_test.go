package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushd/pushd/configs"
	"github.com/pushd/pushd/queue/queuetest"
)

func TestReadBatches(t *testing.T) {
	one := `{"schema":"pushd.batch/v1","batch_id":"b1"}`
	tests := []struct {
		name, in string
		want     int
		err      string
	}{
		{"one object", one, 1, ""},
		{"array", "[" + one + "," + one + "]", 2, ""},
		{"lines", one + "\n\n" + one + "\n" + one + "\n", 3, ""},
		{"bad line", one + "\n{oops\n", 0, ":2: not valid JSON"},
		{"empty", "  \n", 0, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := readBatches("-", strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v, want error %q", err, tt.err)
				}
				return
			}
			if err != nil || len(docs) != tt.want {
				t.Fatalf("got %d docs, %v", len(docs), err)
			}
		})
	}
}

func TestEnqueue(t *testing.T) {
	url := queuetest.URL(t)
	top := queuetest.Topology(t, url)
	env := map[string]string{
		configs.EnvName("amqp.url"): url, configs.EnvName("amqp.exchange"): top.Exchange,
		configs.EnvName("amqp.queue"): top.Queue, configs.EnvName("amqp.high_queue"): top.HighQueue,
		configs.EnvName("amqp.dead_exchange"): top.DeadExchange, configs.EnvName("amqp.dead_queue"): top.DeadQueue,
		configs.EnvName("amqp.events_exchange"): top.EventsExchange,
	}
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"enqueue", "-campaign", "c1", "-n", "2500"}, getenv, nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "published 3 batches (2500 recipients)") {
		t.Errorf("output %q", out.String())
	}
	ch := queuetest.Conn(t, url)
	d := queuetest.Get(t, ch, top.Queue, 10*time.Second)
	if d.MessageId != "c1/000000" || d.ContentType != "application/json" || d.DeliveryMode != 2 {
		t.Errorf("message properties: id %q type %q mode %d", d.MessageId, d.ContentType, d.DeliveryMode)
	}

	// A file with a broken batch is refused before anything is published.
	file := filepath.Join(t.TempDir(), "b.json")
	if err := os.WriteFile(file, []byte(`{"schema":"pushd.batch/v1","batch_id":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(ctx, []string{"enqueue", "-file", file, "-high"}, getenv, nil, &out)
	if err == nil || !strings.Contains(err.Error(), "batch 1") {
		t.Fatalf("got %v", err)
	}
	if n := queuetest.Ready(t, ch, top.HighQueue); n != 0 {
		t.Errorf("%d messages published from a refused file", n)
	}
	// -no-validate publishes it anyway, on the high lane.
	if err := run(ctx, []string{"enqueue", "-file", file, "-high", "-no-validate"}, getenv, nil, &out); err != nil {
		t.Fatal(err)
	}
	if d := queuetest.Get(t, ch, top.HighQueue, 10*time.Second); string(d.Body) != `{"schema":"pushd.batch/v1","batch_id":"x"}` {
		t.Errorf("body %s", d.Body)
	}
}
