package dispatcher

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pushd/pushd/ratelimit"
)

// fakeLanes hands the deliveries sent on in to the dispatcher's handler
// while consumed, and records when consuming starts and stops.
type fakeLanes struct {
	in               chan *fakeDelivery
	started, stopped chan struct{}
	once             sync.Once
}

func newFakeLanes() *fakeLanes {
	return &fakeLanes{in: make(chan *fakeDelivery), started: make(chan struct{}), stopped: make(chan struct{})}
}

func (l *fakeLanes) Consume(ctx context.Context, h func(context.Context, Delivery)) {
	l.once.Do(func() { close(l.started) })
	defer close(l.stopped)
	for {
		select {
		case d := <-l.in:
			h(ctx, d.value())
		case <-ctx.Done():
			return
		}
	}
}

// newIdle returns a Dispatcher on fakes that is not started.
func newIdle(t *testing.T, lanes Lanes) (*Dispatcher, *fakeProvider) {
	t.Helper()
	ios := &fakeProvider{}
	d := New(Config{Clock: ratelimit.NewManualClock(time.Now()), Workers: [numPlatforms]int{IOS: 2, Android: 2}}, Deps{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: &countingMetrics{}, Outbox: &fakeOutbox{},
		Lanes: lanes, Queues: newFakeQueues(), Store: newFakeStore(), Events: newFakeQueues(), Limits: &fakeLimits{},
		Providers: map[Platform]Provider{IOS: ios, Android: &fakeProvider{}},
	})
	return d, ios
}

func TestStartConsumesTheLanesAndStopSettlesWhatIsInProgress(t *testing.T) {
	lanes := newFakeLanes()
	d, ios := newIdle(t, lanes)
	gate := make(chan struct{})
	inSend := make(chan struct{}, 100)
	ios.send = func(context.Context, *Recipient) Result {
		inSend <- struct{}{}
		<-gate
		return Result{Outcome: Sent}
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-lanes.started // Start returned once consuming
	del := newDelivery(t, iosBatch("c", "a", 1))
	del.lane = High // sent straight from the lane, no campaign queue
	lanes.in <- del
	<-inSend
	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop(context.Background()) }()
	<-lanes.stopped // consuming stops first
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with a send in progress", err)
	default:
	}
	close(gate)
	if err := <-stopped; err != nil {
		t.Fatalf("soft stop with everything resolved: %v", err)
	}
	if acked, _ := del.wait(t); acked != 1 {
		t.Fatal("the delivery in progress was not acked by the soft stop")
	}
	// Stopping again, or starting after a stop.
	if err := d.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := d.Start(context.Background()); !errors.Is(err, errStopped) {
		t.Errorf("Start after Stop: %v, want %v", err, errStopped)
	}
}

func TestStopDeadlineHandsBack(t *testing.T) {
	d, ios := newIdle(t, nil)
	inSend := make(chan struct{}, 100)
	ios.send = func(ctx context.Context, _ *Recipient) Result {
		inSend <- struct{}{}
		<-ctx.Done() // stuck until the hard stop
		return Result{Outcome: RetryLater, Err: ctx.Err()}
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	del := newDelivery(t, iosBatch("c", "a", 1))
	del.lane = High
	go d.handleLane(context.Background(), del.value())
	<-inSend
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the deadline is already past
	if err := d.Stop(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop past its deadline: %v, want the context's error", err)
	}
	if acked, requeued := del.wait(t); acked+requeued != 1 {
		t.Fatalf("handed back: acked %d requeued %d", acked, requeued)
	}
}

func TestStopBeforeStartAndHardStopBeforeStop(t *testing.T) {
	d, _ := newIdle(t, nil)
	if err := d.Stop(context.Background()); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	if err := d.Start(context.Background()); !errors.Is(err, errStopped) {
		t.Fatalf("Start after Stop: %v", err)
	}

	d, _ = newIdle(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); !errors.Is(err, errStarted) {
		t.Errorf("second Start: %v, want %v", err, errStarted)
	}
	cancel() // the hard stop
	<-d.done
	for range 2 {
		if err := d.Stop(context.Background()); err != nil {
			t.Errorf("Stop after the hard stop: %v", err)
		}
	}
}

// TestStartTakesItsShareBeforeItsFirstSend: an instance joining two that
// consume already takes a third of the cluster-wide rates from its start,
// not the whole rate until its first count of the instances.
func TestStartTakesItsShareBeforeItsFirstSend(t *testing.T) {
	lanes := newFakeLanes()
	queues := newFakeQueues()
	queues.others = 2
	limits := &fakeLimits{}
	if err := limits.SetRateLimit(context.Background(), "global", &LimitSetting{PerSecond: 300}); err != nil {
		t.Fatal(err)
	}
	d := New(Config{Clock: ratelimit.NewManualClock(time.Now())}, Deps{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: &countingMetrics{}, Outbox: &fakeOutbox{},
		Lanes: lanes, Queues: queues, Store: newFakeStore(), Events: newFakeQueues(), Limits: limits,
		Providers: map[Platform]Provider{IOS: &fakeProvider{}, Android: &fakeProvider{}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); <-d.done }()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-lanes.started
	if li := limitOf(t, d.Limits(), "global"); li.InstanceShare != 100 {
		t.Errorf("global limit %+v at start beside 2 instances, want a share of 100", li)
	}
}
