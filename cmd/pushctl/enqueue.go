package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/configs"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/queue"
)

// amqpFlags are the connection flags shared by the AMQP commands; their
// defaults come from the PUSHD_AMQP_* environment and then pushd's defaults.
type amqpFlags struct {
	url      string
	topology queue.Topology
}

func (a *amqpFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	def := queue.DefaultTopology()
	str := func(p *string, name, key, fallback, help string) {
		v := getenv(configs.EnvName(key))
		if v == "" {
			v = fallback
		}
		fs.StringVar(p, name, v, help+" (env "+configs.EnvName(key)+")")
	}
	str(&a.url, "amqp-url", "amqp.url", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL")
	str(&a.topology.Exchange, "exchange", "amqp.exchange", def.Exchange, "batch exchange")
	str(&a.topology.RoutingKey, "routing-key", "amqp.routing_key", def.RoutingKey, "routing key of the normal lane")
	str(&a.topology.HighRoutingKey, "high-routing-key", "amqp.high_routing_key", def.HighRoutingKey, "routing key of the high lane")
	str(&a.topology.Queue, "queue", "amqp.queue", def.Queue, "queue of the normal lane")
	str(&a.topology.HighQueue, "high-queue", "amqp.high_queue", def.HighQueue, "queue of the high lane")
	str(&a.topology.DeadExchange, "dead-exchange", "amqp.dead_exchange", def.DeadExchange, "dead-letter exchange")
	str(&a.topology.DeadQueue, "dead-queue", "amqp.dead_queue", def.DeadQueue, "dead-letter queue")
	str(&a.topology.EventsExchange, "events-exchange", "amqp.events_exchange", def.EventsExchange, "events exchange")
	a.topology.DeliveryLimit = def.DeliveryLimit
}

func enqueue(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("pushctl enqueue", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var conn amqpFlags
	conn.register(fs, getenv)
	file := fs.String("file", "", "`file` of batches: one JSON batch, a JSON array of batches, or one batch per line; - for stdin")
	noValidate := fs.Bool("no-validate", false, "publish file batches as they are, without checking them against pushd.batch/v1 first")
	high := fs.Bool("high", false, "publish on the high (transactional) lane")
	campaign := fs.String("campaign", "", "publish a synthetic campaign with this `id` instead of a file")
	n := fs.Int("n", 1000, "synthetic campaign: number of recipients")
	batchSize := fs.Int("batch-size", dispatcher.MaxRecipients, "synthetic campaign: recipients per batch")
	iosPercent := fs.Int("ios-percent", 50, "synthetic campaign: percentage of iOS recipients (the rest Android)")
	rate := fs.Float64("rate", 0, "synthetic campaign: rate_per_second (0: no campaign limit)")
	test := fs.Bool("test", false, "synthetic campaign: test mode (whitelisted recipients only)")
	title := fs.String("title", "Hello from pushd", "synthetic campaign: notification title")
	body := fs.String("body", "", "synthetic campaign: notification body")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*file == "") == (*campaign == "") {
		return errors.New("enqueue: give either -file or -campaign")
	}
	if *iosPercent < 0 || *iosPercent > 100 {
		return errors.New("enqueue: -ios-percent must be 0 to 100")
	}
	lane := dispatcher.Normal
	if *high {
		lane = dispatcher.High
	}

	// Read and check everything before publishing anything.
	var bodies [][]byte
	var ids []string
	recipients := 0
	if *file != "" {
		docs, err := readBatches(*file, stdin)
		if err != nil {
			return err
		}
		for i, doc := range docs {
			b, err := dispatcher.DecodeBatch(doc)
			if err != nil && !*noValidate {
				return fmt.Errorf("%s: batch %d: %w (use -no-validate to publish it anyway)", *file, i+1, err)
			}
			id := ""
			if b != nil {
				id, recipients = b.BatchID, recipients+len(b.Recipients)
			}
			bodies, ids = append(bodies, doc), append(ids, id)
		}
	} else {
		opts := synth.Options{
			Campaign: *campaign, Recipients: *n, BatchSize: *batchSize, IOSPercent: *iosPercent, Rate: *rate, Test: *test,
			Notification: dispatcher.Notification{Title: *title, Body: *body},
		}
		for b := range opts.Batches() {
			doc, err := json.Marshal(b)
			if err != nil {
				return err
			}
			bodies, ids = append(bodies, doc), append(ids, b.BatchID)
			recipients += len(b.Recipients)
		}
	}

	p, err := queue.DialProducer(conn.url, conn.topology)
	if err != nil {
		return err
	}
	defer p.Close()
	start := time.Now()
	for i, doc := range bodies {
		if err := p.Publish(ctx, lane, ids[i], doc); err != nil {
			return fmt.Errorf("batch %d: %w", i+1, err)
		}
	}
	if err := p.Wait(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "published %d batches (%d recipients) to %s on the %s lane in %v, all confirmed\n",
		len(bodies), recipients, conn.topology.Exchange, lane, time.Since(start).Round(time.Millisecond))
	return nil
}

// readBatches reads one JSON batch, a JSON array of batches, or one batch
// per line.
func readBatches(name string, stdin io.Reader) ([][]byte, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return nil, fmt.Errorf("%s: empty", name)
	case trimmed[0] == '[':
		var docs []json.RawMessage
		if err := json.Unmarshal(trimmed, &docs); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out := make([][]byte, len(docs))
		for i, d := range docs {
			out[i] = d
		}
		return out, nil
	case json.Valid(trimmed):
		return [][]byte{trimmed}, nil
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(trimmed))
	sc.Buffer(make([]byte, 0, 64<<10), dispatcher.MaxMessageBytes+1)
	for line := 1; sc.Scan(); line++ {
		l := bytes.TrimSpace(sc.Bytes())
		if len(l) == 0 {
			continue
		}
		if !json.Valid(l) {
			return nil, fmt.Errorf("%s:%d: not valid JSON", name, line)
		}
		out = append(out, append([]byte(nil), l...))
	}
	return out, sc.Err()
}
