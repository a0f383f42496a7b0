package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/cmd/internal/synth"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push/sim"
	"github.com/pushd/pushd/queue"
)

// benchNotification is the notification of the benchmark campaign.
func benchNotification() dispatcher.Notification {
	badge := 1
	return dispatcher.Notification{
		Title: "Spring sale",
		Body:  "50% off today",
		Sound: "default",
		Badge: &badge,
		Data:  map[string]json.RawMessage{"deeplink": json.RawMessage(`"app://sale"`)},
	}
}

// benchTopology returns the default topology with every name prefixed by a
// random prefix, so that a round never meets another's (or production's)
// queues. The prefix also names the campaign.
func benchTopology() (queue.Topology, string) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := "pushbench-" + hex.EncodeToString(b[:])
	return queue.DefaultTopology().WithPrefix(id + "."), id
}

// deleteTopology deletes the queues and exchanges of top. It runs at the
// end of a round whatever happened, so it does not depend on the round's
// context.
func deleteTopology(url string, top queue.Topology, campaigns ...string) error {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		return fmt.Errorf("delete topology %s: %w", top.Exchange, err)
	}
	defer conn.Close()
	var (
		ch   *amqp.Channel
		errs []error
	)
	do := func(what string, f func(*amqp.Channel) error) {
		if ch == nil || ch.IsClosed() {
			if ch, err = conn.Channel(); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", what, err))
				return
			}
		}
		if err := f(ch); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", what, err))
		}
	}
	queues := top.Queues()
	for _, c := range campaigns {
		queues = append(queues, top.CampaignQueue(c))
	}
	for _, q := range queues {
		do("queue "+q, func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	}
	for _, x := range top.Exchanges() {
		do("exchange "+x, func(ch *amqp.Channel) error { return ch.ExchangeDelete(x, false, false) })
	}
	return errors.Join(errs...)
}

// publishCampaign publishes n recipients of the benchmark notification
// (android percent of them Android, the rest iOS) with p to the normal
// lane, in batches of 1000, and waits for the broker's confirms.
func publishCampaign(ctx context.Context, p *queue.Producer, campaign string, n, android int) error {
	o := synth.Options{
		Campaign:     campaign,
		Recipients:   n,
		BatchSize:    dispatcher.MaxRecipients,
		IOSPercent:   100 - android,
		Notification: benchNotification(),
	}
	for b := range o.Batches() {
		body, err := json.Marshal(b)
		if err != nil {
			return err
		}
		if err := p.Publish(ctx, dispatcher.Normal, b.BatchID, body); err != nil {
			return fmt.Errorf("publish %s: %w", b.BatchID, err)
		}
	}
	if err := p.Wait(ctx); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// queueCounts returns the messages left in the lane queues and in the dead
// queue of top.
func queueCounts(url string, top queue.Topology) (lanes, dead int, err error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, 0, err
	}
	for _, q := range []string{top.Queue, top.HighQueue, top.DeadQueue} {
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			return 0, 0, fmt.Errorf("inspect %s: %w", q, err)
		}
		if q == top.DeadQueue {
			dead = st.Messages
		} else {
			lanes += st.Messages
		}
	}
	return lanes, dead, nil
}

// pushdStoreFile is the name of pushd's store in its directory.
const pushdStoreFile = "pushd.db"

// pushdEnv is the environment that points pushd at the round's topology and
// at the simulator, on free ports, with its store in dir. It also returns
// the address of pushd's metrics server (/readyz, /metrics).
func (b *bench) pushdEnv(top queue.Topology, dir string) (env []string, metricsAddr string, err error) {
	metricsAddr, err = freeAddr()
	if err != nil {
		return nil, "", err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	return []string{
		"PUSHD_AMQP_URL=" + b.cfg.amqpURL,
		"PUSHD_AMQP_EXCHANGE=" + top.Exchange,
		"PUSHD_AMQP_QUEUE=" + top.Queue,
		"PUSHD_AMQP_HIGH_QUEUE=" + top.HighQueue,
		"PUSHD_AMQP_DEAD_EXCHANGE=" + top.DeadExchange,
		"PUSHD_AMQP_DEAD_QUEUE=" + top.DeadQueue,
		"PUSHD_AMQP_EVENTS_EXCHANGE=" + top.EventsExchange,
		"PUSHD_APNS_HOST=" + b.sim.url,
		"PUSHD_APNS_CA_FILE=" + b.sim.caFile,
		"PUSHD_FCM_ENDPOINT=" + b.sim.url + "/v1",
		"PUSHD_FCM_CA_FILE=" + b.sim.caFile,
		"PUSHD_METRICS_ADDR=" + metricsAddr,
		"PUSHD_ADMIN_ADDR=" + adminAddr,
		"PUSHD_STORE_DSN=" + cmp.Or(b.cfg.storeDSN, filepath.Join(dir, pushdStoreFile)),
		"PUSHD_LOG_LEVEL=warn",
		// The FCM limit (9,500/s by default, FCM's own quota) is lifted:
		// the measurement is of pushd's cost, not of the quota.
		"PUSHD_RATELIMIT_FCM_PER_SECOND=0",
	}, metricsAddr, nil
}

// pushdSetKeys are the variables pushdEnv sets; the same names in
// pushbench's environment are overridden.
var pushdSetKeys = []string{
	"PUSHD_AMQP_URL", "PUSHD_AMQP_EXCHANGE", "PUSHD_AMQP_QUEUE", "PUSHD_AMQP_HIGH_QUEUE",
	"PUSHD_AMQP_DEAD_EXCHANGE", "PUSHD_AMQP_DEAD_QUEUE", "PUSHD_AMQP_EVENTS_EXCHANGE",
	"PUSHD_APNS_HOST", "PUSHD_APNS_CA_FILE", "PUSHD_FCM_ENDPOINT", "PUSHD_FCM_CA_FILE",
	"PUSHD_METRICS_ADDR", "PUSHD_ADMIN_ADDR", "PUSHD_STORE_DSN", "PUSHD_LOG_LEVEL",
	"PUSHD_RATELIMIT_FCM_PER_SECOND",
}

// freeAddr returns a loopback address with a port free at the time of the
// call.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// runPushd is the pushd contender: publish the campaign to a fresh
// topology, start pushd, time its drain, stop it with SIGTERM and check it
// left nothing behind. With bl, it is the pushd+blacklist contender: the
// same, but pushd's store is a copy of bl, so that pushd loads its
// blacklist at start and checks every recipient against it. Either way
// the sample holds pushd's start-up time, and pushd must have loaded the
// blacklist it was given (none, or bl's).
func (b *bench) runPushd(ctx context.Context, round int, bl *blacklistStore) (s *sample, err error) {
	name, wantBlacklist := pushd, 0
	if bl != nil {
		name, wantBlacklist = pushdBlacklist, bl.entries
	}
	top, campaign := benchTopology()
	p, err := queue.DialProducer(b.cfg.amqpURL, top) // declares the topology
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := deleteTopology(b.cfg.amqpURL, top, campaign, campaign+"-high"); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	err = publishCampaign(ctx, p, campaign, b.cfg.n, b.cfg.android)
	_ = p.Close()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.dir, fmt.Sprintf("%s-round%d", name, round))
	env, metricsAddr, err := b.pushdEnv(top, dir)
	if err != nil {
		return nil, err
	}
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	if bl != nil {
		if err := bl.copyTo(dir); err != nil {
			return nil, err
		}
	}
	base, err := b.poll.stats(ctx)
	if err != nil {
		return nil, err
	}

	penv, err := b.profileEnv(dir)
	if err != nil {
		return nil, err
	}
	env = append(env, penv...)

	d, err := startChild(name, b.cfg.pushd, nil, env, nil)
	if err != nil {
		return nil, err
	}
	profiled := b.profilePushd(ctx, name, round, envValue(env, "PUSHD_ADMIN_ADDR"), base)
	// The drain is timed from the simulator's counts; readiness from
	// pushd's /readyz, polled meanwhile.
	readyCtx, stopReady := context.WithCancel(ctx)
	ready := make(chan readiness, 1)
	go func() { ready <- waitReady(readyCtx, d, metricsAddr, pollInterval) }()
	high := b.startHigh(ctx, top, campaign+"-high", base)
	s, err = b.drainN(ctx, d, base, int64(b.cfg.n+b.cfg.high), func(s *sample) error {
		if err := <-profiled; err != nil {
			s.Notes = append(s.Notes, "no CPU profile: "+err.Error())
		}
		if b.cfg.high == 0 {
			return nil
		}
		if err := high.wait(); err != nil {
			return fmt.Errorf("high lane: %w", err)
		}
		if s.High, err = scrapeHigh(ctx, metricsAddr); err != nil {
			return err
		}
		if s.High.Batches != int64(b.cfg.high) {
			s.Notes = append(s.Notes, fmt.Sprintf("pushd's histogram counted %d of the %d high-lane batches", s.High.Batches, b.cfg.high))
		}
		return nil
	})
	high.stop()
	stopReady()
	rd := <-ready
	if err != nil {
		return nil, err
	}
	if rd.err != nil {
		return nil, fmt.Errorf("%s start-up: %w", name, rd.err)
	}
	if rd.blacklist != wantBlacklist {
		return nil, fmt.Errorf("%s had %d blacklist entries in memory when ready, want %d", name, rd.blacklist, wantBlacklist)
	}
	s.Ready = rd.after
	// pushd acks each batch once all its recipients are sent: after a clean
	// exit nothing is left in the lanes and nothing was dead-lettered.
	lanes, dead, err := queueCounts(b.cfg.amqpURL, top)
	if err != nil {
		return nil, err
	}
	if lanes != 0 || dead != 0 {
		return nil, fmt.Errorf("after %s exited, %d batches were left in the lane queues and %d dead-lettered", name, lanes, dead)
	}
	return s, nil
}

// highRun publishes the -high batches during a pushd contender's drain.
type highRun struct {
	cancel context.CancelFunc
	done   chan error
}

// startHigh starts publishing the -high batches (none without -high) on a
// connection of its own, from when the simulator has accepted a quarter of
// the normal lane's campaign since base.
func (b *bench) startHigh(ctx context.Context, top queue.Topology, campaign string, base sim.Stats) *highRun {
	ctx, cancel := context.WithCancel(ctx)
	h := &highRun{cancel: cancel, done: make(chan error, 1)}
	if b.cfg.high == 0 {
		h.done <- nil
		return h
	}
	go func() {
		p, err := queue.DialProducer(b.cfg.amqpURL, top)
		if err != nil {
			h.done <- err
			return
		}
		defer p.Close()
		start := make(chan struct{})
		go func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				if st, err := b.poll.stats(ctx); err == nil && both(st).Accepted-both(base).Accepted >= int64(b.cfg.n/4) {
					close(start)
					return
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
			}
		}()
		h.done <- publishHigh(ctx, p, campaign, b.cfg.high, start)
	}()
	return h
}

// wait waits for the high-lane batches to be published.
func (h *highRun) wait() error { return <-h.done }

// stop ends the publishing, if still going.
func (h *highRun) stop() { h.cancel() }
