// Package queuetest helps tests that need a real RabbitMQ: the broker URL,
// a topology with names unique to the test (deleted when it ends), queue
// inspection, and a TCP proxy that can cut or freeze the connection.
//
// It is for tests only. A test that calls URL fails, loudly, when RabbitMQ
// is not reachable: start it with scripts/services.sh.
package queuetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/queue"
)

// DefaultURL is used when PUSHD_TEST_AMQP_URL is not set.
const DefaultURL = "amqp://guest:guest@127.0.0.1:5672/"

// URL returns the RabbitMQ URL for tests and checks that it answers.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("PUSHD_TEST_AMQP_URL")
	if u == "" {
		u = DefaultURL
	}
	conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("RabbitMQ is required for this test and is not reachable at %s: %v (run scripts/services.sh)", u, err)
	}
	_ = conn.Close()
	return u
}

// Topology returns the default topology with every name prefixed by a
// random, test-unique prefix; its queues and exchanges are deleted when the
// test ends.
func Topology(t testing.TB, url string) queue.Topology {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	top := queue.DefaultTopology().WithPrefix("t-" + hex.EncodeToString(b[:]) + ".")
	deleteAtEnd(t, url, top.Queues(), top.Exchanges())
	return top
}

// DeleteAtEnd deletes the named queues (campaign queues, say) when the test
// ends.
func DeleteAtEnd(t testing.TB, url string, queues ...string) {
	deleteAtEnd(t, url, queues, nil)
}

// deleteAtEnd deletes queues, then exchanges, when the test ends.
func deleteAtEnd(t testing.TB, url string, queues, exchanges []string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		for _, q := range queues {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, x := range exchanges {
			_ = ch.ExchangeDelete(x, false, false)
		}
	})
}

// Conn dials url and returns a channel closed at the end of the test.
func Conn(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	return ch
}

// Publish publishes body persistently to exchange with key and waits for
// the broker's confirm. The exchange, queue and binding must exist: an
// unroutable message is confirmed too, and lost.
func Publish(t testing.TB, ch *amqp.Channel, exchange, key string, body []byte) {
	t.Helper()
	PublishWith(t, ch, exchange, key, amqp.Publishing{Body: body})
}

// PublishWith is Publish of msg, made persistent JSON.
func PublishWith(t testing.TB, ch *amqp.Channel, exchange, key string, msg amqp.Publishing) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg.ContentType, msg.DeliveryMode = "application/json", amqp.Persistent
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("publish not confirmed: ok=%v err=%v", ok, err)
	}
}

// Ready returns the number of ready messages in queue.
func Ready(t testing.TB, ch *amqp.Channel, queue string) int {
	t.Helper()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// Counts returns the ready and unacknowledged messages of queue, as
// rabbitmqctl reports them (it sees unacked messages, which AMQP does not).
func Counts(t testing.TB, queue string) (ready, unacked int) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged").Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == queue {
			ready, _ = strconv.Atoi(f[1])
			unacked, _ = strconv.Atoi(f[2])
			return ready, unacked
		}
	}
	t.Fatalf("queue %s not listed by rabbitmqctl", queue)
	return 0, 0
}

// Get takes one message from queue (acknowledging it), or fails the test
// after wait.
func Get(t testing.TB, ch *amqp.Channel, queue string, wait time.Duration) amqp.Delivery {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get %s: %v", queue, err)
		}
		if ok {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message in %s within %v", queue, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Exists reports whether queue exists, on a connection of its own.
func Exists(t testing.TB, url, queue string) bool {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	var aerr *amqp.Error
	if errors.As(err, &aerr) && aerr.Code == amqp.NotFound {
		return false
	}
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return true
}

// StopRaftMember stops the Raft member of quorum queue q on the local
// RabbitMQ node, through rabbitmqctl, leaving the queue declared: until
// StartRaftMember, RabbitMQ 3.10 answers a basic.consume on it by closing
// the connection (541 INTERNAL_ERROR, {badmatch,{error,noproc}}), as it
// does for a queue being deleted. Only q is touched.
func StopRaftMember(t testing.TB, url, q string) {
	t.Helper()
	raftMember(t, url, q, "stop_server")
}

// StartRaftMember starts again the member StopRaftMember stopped.
func StartRaftMember(t testing.TB, url, q string) {
	t.Helper()
	raftMember(t, url, q, "restart_server")
}

func raftMember(t testing.TB, amqpURL, q, fn string) {
	t.Helper()
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	// The member's name: the vhost ("/" written %2F), "_", the queue.
	vhost := strings.TrimPrefix(u.Path, "/")
	if vhost == "" || vhost == "/" {
		vhost = "%2F"
	}
	name := strings.ReplaceAll(vhost+"_"+q, `'`, `\'`)
	expr := fmt.Sprintf("ra:%s(quorum_queues, {'%s', node()}).", fn, name)
	out, err := exec.Command("rabbitmqctl", "eval", expr).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("rabbitmqctl eval %q: %v: %s (this test needs rabbitmqctl on the broker's host)", expr, err, out)
	}
}
