package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/pushd/pushd/configs"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/metrics"
	"github.com/pushd/pushd/queue"
)

// run starts pushd and blocks until ctx ends (SIGTERM), then shuts down in
// phases: stop consuming, let in-flight batches finish within
// dispatcher.shutdown_timeout, hand back what is left, close the broker
// connection. It returns nil after a clean shutdown.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pushd", flag.ContinueOnError)
	fs.SetOutput(stdout)
	configFile := fs.String("config", "", "YAML configuration `file` (see configs/pushd.example.yaml); PUSHD_* environment variables override it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg, err := configs.Load(*configFile, getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stdout)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	met := metrics.New(reg)

	providers, closeProviders, err := newProviders(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}
	defer closeProviders()

	broker := queue.New(queue.Config{
		URL: cfg.AMQP.URL,
		Topology: queue.Topology{
			Exchange:       cfg.AMQP.Exchange,
			RoutingKey:     cfg.AMQP.RoutingKey,
			HighRoutingKey: cfg.AMQP.HighRoutingKey,
			Queue:          cfg.AMQP.Queue,
			HighQueue:      cfg.AMQP.HighQueue,
			DeadExchange:   cfg.AMQP.DeadExchange,
			DeadQueue:      cfg.AMQP.DeadQueue,
			EventsExchange: cfg.AMQP.EventsExchange,
			DeliveryLimit:  cfg.AMQP.DeliveryLimit,
		},
		Prefetch:     cfg.AMQP.Prefetch,
		HighPrefetch: cfg.AMQP.HighPrefetch,
		Heartbeat:    cfg.AMQP.Heartbeat,
		ReconnectMin: cfg.AMQP.ReconnectMin,
		ReconnectMax: cfg.AMQP.ReconnectMax,
	}, logger.With("component", "amqp"), met)

	var workers [3]int
	workers[dispatcher.IOS] = cfg.APNs.Workers
	workers[dispatcher.Android] = cfg.FCM.Workers
	disp := dispatcher.New(dispatcher.Config{
		Workers:     workers,
		MaxAttempts: cfg.Dispatcher.MaxAttempts,
		RetryBase:   cfg.Dispatcher.RetryBase,
		RetryMax:    cfg.Dispatcher.RetryMax,
	}, logger.With("component", "dispatcher"), met, broker, providers)

	msrv, err := metrics.Listen(cfg.Metrics.Addr, reg, broker.Ready, logger)
	if err != nil {
		return fmt.Errorf("metrics.addr: %w", err)
	}
	logger.Info("pushd starting", "metrics_addr", msrv.Addr())

	// Each part has its own lifetime so that shutdown runs in order; the
	// group reports the first failure.
	bg := context.WithoutCancel(ctx)
	connCtx, stopConn := context.WithCancel(bg)
	dispCtx, stopDisp := context.WithCancel(bg)
	consumeCtx, stopConsume := context.WithCancel(bg)
	serveCtx, stopServe := context.WithCancel(bg)
	defer func() { stopConsume(); stopDisp(); stopConn(); stopServe() }()

	g, failed := errgroup.WithContext(bg)
	g.Go(func() error { return broker.Run(connCtx) })
	dispDone := make(chan struct{})
	g.Go(func() error { defer close(dispDone); return disp.Run(dispCtx) })
	consumeDone := make(chan struct{})
	g.Go(func() error {
		defer close(consumeDone)
		return broker.Consume(consumeCtx, func(ctx context.Context, d *queue.Delivery) { disp.Handle(ctx, d) })
	})
	g.Go(func() error { return msrv.Run(serveCtx) })

	select {
	case <-ctx.Done():
		logger.Info("shutting down: no new batches", "deadline", cfg.Dispatcher.ShutdownTimeout)
	case <-failed.Done():
		logger.Error("a component failed; shutting down")
	}
	deadline, cancel := context.WithTimeout(bg, cfg.Dispatcher.ShutdownTimeout)
	defer cancel()
	stopConsume()
	select {
	case <-consumeDone:
	case <-deadline.Done():
	}
	if disp.Drain(deadline) {
		logger.Info("all in-flight batches finished")
	} else {
		logger.Warn("shutdown deadline reached; handing back unsent recipients")
	}
	stopDisp()
	<-dispDone
	stopConn()
	stopServe()
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	logger.Info("pushd stopped")
	return err
}

func newLogger(c configs.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
