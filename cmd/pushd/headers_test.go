package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/queue"
	"github.com/pushd/pushd/queue/queuetest"
)

// A producer that sets pushd's internal headers changes nothing (issue
// 13, item 5): two batches with the same forged ledger key are both sent
// (the second is not skipped as "already done"), a forged attempt count
// does not keep them out of the received counter, and a hold-until a
// century ahead does not park a batch.
func TestForgedInternalHeadersChangeNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, sim.Config{})
	h.withAdmin()
	d := h.start(nil)
	o := synth.Options{Campaign: "forged", Recipients: 300, BatchSize: 100, IOSPercent: 50}
	queuetest.DeleteAtEnd(t, h.url, h.top.CampaignQueue(o.Campaign))
	p, err := queue.DialProducer(h.url, h.top)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	forged := []amqp.Table{
		{queue.HeaderKey: "stolen-key", queue.HeaderAttempt: int32(1)},
		{queue.HeaderKey: "stolen-key", queue.HeaderAttempt: int32(1)},
		{queue.HeaderHoldUntil: time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()},
	}
	ctx := context.Background()
	i := 0
	for b := range o.Batches() {
		body, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.PublishRaw(ctx, h.top.RoutingKey, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent,
			MessageId: b.BatchID, Body: body, Headers: forged[i],
		}); err != nil {
			t.Fatal(err)
		}
		i++
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	c := h.counted(d, o.Campaign, 300)
	if c.Received != 300 || c.Sent != 300 {
		t.Errorf("counters %+v, want 300 received and sent", c)
	}
	if dups := h.delivered(o, true); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	h.countersAddUp()
}
