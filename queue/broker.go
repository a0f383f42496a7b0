package queue

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pushd/pushd/dispatcher"
)

// Config configures a Broker. Zero fields take the defaults given.
type Config struct {
	// URL is the AMQP URL, e.g. amqp://guest:guest@127.0.0.1:5672/.
	URL string
	// Topology names exchanges and queues.
	Topology Topology
	// Prefetch and HighPrefetch bound the unacknowledged batches per lane
	// (defaults 8 and 32). They are what absorbs bursts, not memory.
	Prefetch     int
	HighPrefetch int
	// Heartbeat is how long the connection may stay silent before it is
	// declared dead and replaced (default 10s; at least 2s). See
	// amqpHeartbeat for the interval negotiated with the broker.
	Heartbeat time.Duration
	// ReconnectMin and ReconnectMax bound the exponential backoff between
	// connection attempts (defaults 500ms and 30s).
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// Name is shown as the connection name in the broker (default
	// "pushd"); the campaign link's is Name + "-campaigns".
	Name string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// HeaderKey seals pushd's own headers (see headerSeal). Every instance
	// sharing the broker must have the same; empty: a random key of this
	// process's own.
	HeaderKey []byte
}

func (c *Config) setDefaults() {
	if c.Prefetch <= 0 {
		c.Prefetch = 8
	}
	if c.HighPrefetch <= 0 {
		c.HighPrefetch = 32
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 10 * time.Second
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = 500 * time.Millisecond
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = 30 * time.Second
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	if c.Name == "" {
		c.Name = "pushd"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Metrics receives the broker's state changes and publish results.
type Metrics interface {
	// Connected reports the connection going up or down.
	Connected(up bool)
	// ConnectFailed counts a failed connection attempt.
	ConnectFailed()
	// Consuming reports a lane's consumer starting or stopping.
	Consuming(l dispatcher.Lane, up bool)
	// Published counts a confirmed publish of kind (hold, dead_letter,
	// event, batch) or a failed one.
	Published(kind string, ok bool)
	// HandlerPanicked counts a delivery whose handler panicked.
	HandlerPanicked()
	// ConsumeFailed counts a consumer that failed to start or stopped
	// unasked, by queue kind ("lane" or "campaign"); it is started again
	// after a backoff.
	ConsumeFailed(kind string)
}

// Header names pushd reads and writes.
const (
	HeaderAttempt   = "x-pushd-attempt"    // send passes already made
	HeaderKey       = "x-pushd-key"        // ledger key of a message pushd published
	HeaderHoldUntil = "x-pushd-hold-until" // unix milliseconds
	// HeaderTimestampMs is when the message was published, in Unix
	// milliseconds: the AMQP timestamp has whole seconds only. RabbitMQ's
	// message_timestamp plugin sets it too.
	HeaderTimestampMs = "timestamp_in_ms"
	HeaderReason      = "x-pushd-reason"   // dead letters: short reason code
	HeaderDetail      = "x-pushd-detail"   // dead letters: explanation
	HeaderAttempts    = "x-pushd-attempts" // dead letters: attempts made
	HeaderProvider    = "x-pushd-provider" // dead letters: last provider
	HeaderStatus      = "x-pushd-provider-status"
	HeaderPReason     = "x-pushd-provider-reason"
	headerPublishID   = "x-pushd-publish-id" // matches basic.return to its publish
)

// Broker keeps two AMQP connections to RabbitMQ (see link), reconnecting
// each with backoff, declares the topology on the main one, consumes the
// lanes and the campaign queues and publishes with confirms. Its methods
// are safe for concurrent use.
type Broker struct {
	cfg Config
	log *slog.Logger
	met Metrics

	main *link // topology, lanes, publishing
	camp *link // campaign queues

	seals     *sealer
	consuming [2]atomic.Bool
	pubSeq    atomic.Uint64
	watchers  sync.WaitGroup // goroutines watching channels close

	// consumeOnce and sleep are consumeLoop's steps; tests replace them
	// to fail consumers on purpose and to see the waits between attempts.
	consumeOnce func(ctx context.Context, s *session, c consumer, h handler) (started bool, err error)
	sleep       func(ctx context.Context, d time.Duration) bool
}

// New returns a Broker; Run connects it.
func New(cfg Config, logger *slog.Logger, met Metrics) *Broker {
	cfg.setDefaults()
	b := &Broker{
		cfg: cfg, log: logger, met: met,
		main: newLink(cfg.Name, true),
		camp: newLink(cfg.Name+"-campaigns", false),
	}
	b.seals = newSealer(cfg.HeaderKey, logger.Warn)
	b.consumeOnce = b.consume
	b.sleep = sleep
	return b
}

// session is one live connection, with its publishing channel on the main
// link.
type session struct {
	conn   *amqp.Connection
	closed chan struct{} // closed when conn is gone

	pubMu   sync.Mutex // guards pub and serialises mandatory publishes
	pub     *amqp.Channel
	returns chan amqp.Return
}

// Run connects both links and keeps them up until ctx ends, then closes
// them. Close the connections last: acks of in-flight deliveries need
// them.
func (b *Broker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { b.keep(ctx, b.main) })
	wg.Go(func() { b.keep(ctx, b.camp) })
	wg.Wait()
	b.watchers.Wait()
	return nil
}

// keep connects l and keeps it connected until ctx ends, then closes it.
// pushd_amqp_connected follows the main link.
func (b *Broker) keep(ctx context.Context, l *link) {
	retry := backoff{min: b.cfg.ReconnectMin, max: b.cfg.ReconnectMax}
	connected := func(up bool) {
		if l == b.main {
			b.met.Connected(up)
		}
	}
	for {
		s, err := b.connect(l)
		if err != nil {
			b.met.ConnectFailed()
			wait := retry.next()
			b.log.Warn("cannot connect to RabbitMQ; retrying", "connection", l.name, "err", err, "retry_in", wait.Round(time.Millisecond))
			if !b.sleep(ctx, wait) {
				return
			}
			continue
		}
		retry.reset()
		b.log.Info("connected to RabbitMQ", "connection", l.name, "url", redactURL(b.cfg.URL))
		connected(true)
		l.set(s)
		select {
		case <-s.closed:
			l.set(nil)
			connected(false)
			b.log.Warn("lost connection to RabbitMQ; reconnecting", "connection", l.name)
		case <-ctx.Done():
			l.set(nil)
			connected(false)
			if err := s.conn.CloseDeadline(time.Now().Add(5 * time.Second)); err != nil && !errors.Is(err, amqp.ErrClosed) {
				b.log.Debug("close connection", "connection", l.name, "err", err)
			}
			<-s.closed
			return
		}
	}
}

// Ready reports whether both links are connected and both lanes consume.
func (b *Broker) Ready() bool {
	return b.main.up() && b.camp.up() && b.consuming[dispatcher.Normal].Load() && b.consuming[dispatcher.High].Load()
}

// amqpHeartbeat returns the AMQP heartbeat to negotiate so that a silent
// connection is detected within silence. amqp091-go expects a frame every
// half heartbeat and gives up after three such periods without one (a
// read deadline of 1.5 heartbeats); the protocol counts whole seconds.
// So: two thirds of silence, rounded down to the second, at least 1s.
func amqpHeartbeat(silence time.Duration) time.Duration {
	return max(time.Second, (silence * 2 / 3).Truncate(time.Second))
}

// connect opens a connection for l: with pushd's topology declared and a
// publishing channel for the main link.
func (b *Broker) connect(l *link) (*session, error) {
	conn, err := amqp.DialConfig(b.cfg.URL, amqp.Config{
		Heartbeat:  amqpHeartbeat(b.cfg.Heartbeat),
		Locale:     "en_US",
		Properties: amqp.Table{"connection_name": l.name},
		// Bounds the TCP connect and the TLS and AMQP handshakes together
		// by the same silence as an open connection gets (amqp091-go
		// clears the deadline once the connection is open): a broker that
		// accepts but never answers (a half-open link, a frozen proxy)
		// fails the attempt instead of hanging it.
		Dial: amqp.DefaultDial(b.cfg.Heartbeat),
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", redactURL(b.cfg.URL), err)
	}
	s := &session{conn: conn, closed: make(chan struct{})}
	if l.topology {
		if err := b.cfg.Topology.Declare(conn, func(msg string, args ...any) { b.log.Warn(msg, args...) }); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("declare topology: %w", err)
		}
		if err := s.openPublisher(); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	notify := conn.NotifyClose(make(chan *amqp.Error, 1))
	b.watchers.Go(func() {
		if err := <-notify; err != nil {
			b.log.Debug("connection closed", "connection", l.name, "err", err)
		}
		close(s.closed)
	})
	return s, nil
}

// openPublisher opens the confirm-mode publishing channel; callers hold
// pubMu or own s exclusively.
func (s *session) openPublisher() error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open publish channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return fmt.Errorf("enable publisher confirms: %w", err)
	}
	s.returns = ch.NotifyReturn(make(chan amqp.Return, 16))
	s.pub = ch
	return nil
}

// errReturned means the broker could not route a mandatory message.
var errReturned = errors.New("message returned as unroutable")

// publish sends msg and waits for the broker's confirm, retrying on a new
// connection when the current one fails. It gives up only when ctx ends or
// the message is unroutable.
func (b *Broker) publish(ctx context.Context, kind, exchange, key string, mandatory bool, msg amqp.Publishing) error {
	for {
		s, err := b.main.wait(ctx)
		if err != nil {
			b.met.Published(kind, false)
			return fmt.Errorf("publish %s: no broker connection: %w", kind, err)
		}
		err = s.publish(ctx, b.pubSeq.Add(1), exchange, key, mandatory, msg)
		if err == nil {
			b.met.Published(kind, true)
			return nil
		}
		if errors.Is(err, errReturned) || ctx.Err() != nil {
			b.met.Published(kind, false)
			return fmt.Errorf("publish %s to %q/%q: %w", kind, exchange, key, err)
		}
		b.log.Debug("publish failed; retrying", "kind", kind, "err", err)
		select {
		case <-s.closed:
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

func (s *session) publish(ctx context.Context, id uint64, exchange, key string, mandatory bool, msg amqp.Publishing) error {
	s.pubMu.Lock()
	locked := true
	defer func() {
		if locked {
			s.pubMu.Unlock()
		}
	}()
	if s.pub.IsClosed() {
		if err := s.openPublisher(); err != nil {
			return err
		}
	}
	var pid string
	if mandatory {
		pid = strconv.FormatUint(id, 10)
		msg.Headers = withHeader(msg.Headers, headerPublishID, pid)
		drain(s.returns)
	}
	dc, err := s.pub.PublishWithDeferredConfirmWithContext(ctx, exchange, key, mandatory, false, msg)
	if err != nil {
		return err
	}
	if !mandatory {
		// Other publishes may go out while this one waits for its confirm.
		s.pubMu.Unlock()
		locked = false
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("broker refused the message (nack)")
	}
	if mandatory {
		// basic.return precedes the confirm on the wire, and the client
		// delivers it before it processes the ack.
		if r, ok := returned(s.returns, pid); ok {
			return fmt.Errorf("%w: %s", errReturned, r.ReplyText)
		}
	}
	return nil
}

// returned looks among the returns received so far for the one of publish
// pid, discarding others (left over from publishes that gave up waiting).
func returned(c <-chan amqp.Return, pid string) (amqp.Return, bool) {
	for {
		select {
		case r := <-c:
			if r.Headers[headerPublishID] == pid {
				return r, true
			}
		default:
			return amqp.Return{}, false
		}
	}
}

func drain(c <-chan amqp.Return) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

func withHeader(h amqp.Table, k string, v any) amqp.Table {
	out := make(amqp.Table, len(h)+1)
	for hk, hv := range h {
		out[hk] = hv
	}
	out[k] = v
	return out
}

// Hold publishes body to lane so that it is delivered again no earlier than
// at: directly when at is due, else through the delay queue of the longest
// level that fits. It implements dispatcher.Outbox.
func (b *Broker) Hold(ctx context.Context, lane dispatcher.Lane, body []byte, h dispatcher.Hop, at time.Time) error {
	laneQueue, key := b.cfg.Topology.lane(lane)
	headers := hopHeaders(h)
	exchange := b.cfg.Topology.Exchange
	if !at.IsZero() {
		headers[HeaderHoldUntil] = at.UnixMilli()
		if wait := at.Sub(b.cfg.Now()); wait > 200*time.Millisecond {
			exchange, key = "", delayQueue(laneQueue, max(delayLevel(wait), 0))
		}
	}
	b.seals.seal(headers, body)
	return b.publish(ctx, "hold", exchange, key, true, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    b.cfg.Now(),
		Headers:      headers,
		Body:         body,
	})
}

// DeadLetter publishes body to the dead-letter exchange with headers naming
// the reason. It implements dispatcher.Outbox.
//
// A dead letter gets a ledger key of its own (x-pushd-key, random): moved
// back to a lane with its headers (a shovel), it is new work and is sent,
// even if its body equals a batch the ledger already has as resolved.
func (b *Broker) DeadLetter(ctx context.Context, body []byte, why dispatcher.DeadLetter) error {
	h := amqp.Table{HeaderReason: why.Reason, HeaderDetail: why.Detail, HeaderKey: "dead-" + crand.Text()}
	b.seals.seal(h, body)
	if why.Attempts > 0 {
		h[HeaderAttempts] = int32(why.Attempts)
	}
	if why.Provider != "" {
		h[HeaderProvider] = why.Provider
		h[HeaderStatus] = int32(why.Status)
		h[HeaderPReason] = why.ProviderReason
	}
	return b.publish(ctx, "dead_letter", b.cfg.Topology.DeadExchange, deadRoutingKey, true, amqp.Publishing{
		MessageId:    why.MessageID,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    b.cfg.Now(),
		Headers:      h,
		Body:         body,
	})
}

// redactURL hides the password of an AMQP URL for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
