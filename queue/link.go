package queue

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// link is one AMQP connection of a Broker, kept up by Run, and the session
// live on it.
//
// A Broker has two: the main link (topology, the lanes' consumers,
// publishing) and the campaign link (campaign queues: their declaration,
// consumers and deletion). RabbitMQ 3.10 answers a basic.consume on a
// quorum queue whose Raft member is not running (the queue is being
// deleted, or was declared again while its old member stops) with a crash
// of the channel, which it reports as a connection error (541
// INTERNAL_ERROR, {badmatch,{error,noproc}}), and a declaration in that
// window likewise (cluster_not_formed). Campaign queues come and go, so
// those operations run on a connection of their own: when the broker
// closes it, the lanes and publishing go on, and only the campaign
// consumers start again.
type link struct {
	// name is the connection name shown in the broker.
	name string
	// topology: the link declares pushd's topology and opens the
	// publishing channel on each connection (the main link).
	topology bool

	mu      sync.Mutex
	sess    *session
	changed chan struct{} // closed and replaced whenever sess changes
}

func newLink(name string, topology bool) *link {
	return &link{name: name, topology: topology, changed: make(chan struct{})}
}

func (l *link) set(s *session) {
	l.mu.Lock()
	l.sess = s
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// up reports whether the link has a session.
func (l *link) up() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess != nil
}

// wait returns the live session, waiting for one until ctx ends. A session
// whose connection closed is not returned, even before Run replaced it.
func (l *link) wait(ctx context.Context) (*session, error) {
	for {
		l.mu.Lock()
		s, changed := l.sess, l.changed
		l.mu.Unlock()
		if s != nil && !isClosed(s.closed) {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// backoff spaces out attempts: exponentially from min to max, each wait
// with equal jitter (between half the step and the step), so that
// instances that failed together do not retry together.
type backoff struct {
	min, max time.Duration
	step     time.Duration // the next step; 0: min
}

// next returns the wait before the next attempt and doubles the step.
func (b *backoff) next() time.Duration {
	d := b.step
	if d <= 0 {
		d = b.min
	}
	b.step = min(d*2, b.max)
	return d/2 + rand.N(d/2+1)
}

// reset starts again from min, after a success.
func (b *backoff) reset() { b.step = 0 }

// sleep waits for d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
