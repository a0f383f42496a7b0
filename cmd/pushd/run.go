package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/pushd/pushd/admin"
	"github.com/pushd/pushd/cmd/internal/buildtag"
	"github.com/pushd/pushd/configs"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/lists"
	"github.com/pushd/pushd/metrics"
	"github.com/pushd/pushd/queue"
	"github.com/pushd/pushd/scheduler"
	"github.com/pushd/pushd/store"
	"github.com/pushd/pushd/store/adminstore"
)

// run starts pushd and blocks until ctx ends (SIGTERM), then stops the
// dispatcher softly (stop consuming, let in-flight batches finish within
// dispatcher.shutdown_timeout, hand back what is left) and closes the
// broker connection. It returns nil after a clean shutdown.
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
	if err := checkSecretFiles(cfg, logger); err != nil {
		return err
	}
	adminTLS, err := loadAdminTLS(cfg.Admin)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	met := metrics.New(reg)

	providers, closeProviders, err := newProviders(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}
	defer closeProviders()

	st, err := store.Open(ctx, cfg.Store.DSN, logger.With("component", "store"))
	if err != nil {
		return fmt.Errorf("store.dsn: %w", err)
	}
	defer st.Close()

	ls := lists.New(st, logger.With("component", "lists"), lists.Config{PollInterval: cfg.Lists.PollInterval})
	if err := ls.Load(ctx); err != nil {
		return fmt.Errorf("load lists: %w", err)
	}
	metrics.ListSizes(reg, func(l string) int { return ls.Len(lists.Name(l)) }, ls.Rev)
	logger.Info("lists loaded", "blacklist", ls.Len(lists.Blacklist), "whitelist", ls.Len(lists.Whitelist))

	// Shared by every instance of the store, so that any of them trusts
	// the headers another one published.
	sealKey, err := st.Secret(ctx, "amqp_header_seal", 32)
	if err != nil {
		return fmt.Errorf("store.dsn: %w", err)
	}
	broker := queue.New(queue.Config{
		URL:       cfg.AMQP.URL,
		HeaderKey: sealKey,
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

	var dc dispatcher.Config
	dc.Workers[dispatcher.IOS] = cfg.APNs.Workers
	dc.Workers[dispatcher.Android] = cfg.FCM.Workers
	dc.MaxAttempts = cfg.Dispatcher.MaxAttempts
	dc.RetryBase, dc.RetryMax = cfg.Dispatcher.RetryBase, cfg.Dispatcher.RetryMax
	dc.BreakerFailures, dc.BreakerProbe = cfg.Dispatcher.BreakerFailures, cfg.Dispatcher.BreakerProbe
	dc.MaxHold, dc.CampaignIdle = cfg.Dispatcher.MaxHold, cfg.Dispatcher.CampaignIdle
	dc.LedgerFlush = cfg.Dispatcher.LedgerFlush
	dc.LedgerLease = cfg.Dispatcher.LedgerLease
	// This process among the instances sharing the store (ledger claims,
	// scheduler leases). Unique per process: a restarted pushd takes over
	// what it held before like any other instance, once the lease runs out.
	host, _ := os.Hostname()
	dc.Owner = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), rand.Text()[:8])
	dc.WhitelistOnly = cfg.Lists.WhitelistOnly
	dc.Limits = limitsOf(cfg.RateLimit)
	deps := dispatcher.Deps{
		Logger:    logger.With("component", "dispatcher"),
		Metrics:   met,
		Outbox:    broker,
		Lanes:     broker,
		Queues:    broker,
		Store:     st,
		Events:    broker,
		Filter:    ls,
		Providers: providers,
		Ledger:    st,
		Limits:    st,
	}
	if cfg.Lists.BlacklistInvalidTokens {
		deps.Blacklist = blacklister{st, ls}
	}
	disp := dispatcher.New(dc, deps)

	msrv, err := metrics.Listen(cfg.Metrics.Addr, reg, func() bool { return broker.Ready() && disp.StoreUp() }, logger)
	if err != nil {
		return fmt.Errorf("metrics.addr: %w", err)
	}
	sched, err := scheduler.New(scheduler.Config{
		Store:     st,
		Publisher: broker,
		Owner:     dc.Owner,
		LeaseFor:  cfg.Scheduler.Lease,
		MaxLate:   cfg.Scheduler.MaxLate,
		Metrics:   metrics.NewScheduler(reg),
		Logger:    logger.With("component", "scheduler"),
	})
	if err != nil {
		return err
	}
	adm, err := admin.New(admin.Config{
		TokensFile: cfg.Admin.TokensFile,
		Lists:      st,
		OnListChange: func(list lists.Name) {
			// Apply it here before answering, so that a batch enqueued
			// right after the answer is filtered by it.
			if err := ls.Sync(ctx); err != nil {
				logger.Error("cannot apply list change; the poll will retry", "list", list, "err", err)
			}
		},
		MaxImportBytes:    cfg.Admin.MaxImportBytes,
		Audiences:         adminstore.Audiences{Store: st},
		MaxAudienceBytes:  cfg.Admin.MaxAudienceBytes,
		ImportReadTimeout: cfg.Admin.ImportReadTimeout,
		Campaigns:         st,
		Tests:             testSender{st: st, sched: sched},
		OnSchedule:        sched.Wake,
		RequireApproval:   cfg.Admin.RequireApproval,
		Pprof:             cfg.Admin.Pprof,
		TimeZone:          cfg.Admin.TimeZone,
		AuditLog:          adminstore.Audit{Store: st},
		Users:             adminstore.Users{Store: st},
		SessionIdle:       cfg.Admin.SessionIdle,
		SessionMax:        cfg.Admin.SessionMax,
		UserFailures:      cfg.Admin.SignInUserFailures,
		AddressFailures:   cfg.Admin.SignInAddressFailures,
		FailureWindow:     cfg.Admin.SignInFailureWindow,
		TLS:               adminTLS,
		Metrics:           reg,
	}, disp, adminstore.Audit{Store: st}, logger.With("component", "admin"))
	if err != nil {
		return fmt.Errorf("admin.tokens_file: %w", err)
	}
	aln, err := net.Listen("tcp", cfg.Admin.Addr)
	if err != nil {
		return fmt.Errorf("admin.addr: %w", err)
	}
	logger.Info("pushd starting", "metrics_addr", msrv.Addr(), "admin_addr", aln.Addr().String(), "admin_tls", adminTLS != nil)
	if withGRPCModules {
		logger.Warn("pushd was built without -tags " + buildtag.Shipped + ": about 9 MB more resident memory for gRPC code it never runs; build it with scripts/build.sh")
	}

	// The broker connection outlives the dispatcher, which hands back
	// through it at the end; the servers outlive both, so that /readyz
	// and the admin API answer until the end. The group reports the
	// first failure.
	bg := context.WithoutCancel(ctx)
	connCtx, stopConn := context.WithCancel(bg)
	serveCtx, stopServe := context.WithCancel(bg)
	defer func() { stopConn(); stopServe() }()

	g, failed := errgroup.WithContext(bg)
	g.Go(func() error { return broker.Run(connCtx) })
	if err := disp.Start(bg); err != nil {
		stopConn()
		_ = g.Wait()
		return err
	}
	// The scheduler stops publishing as soon as shutdown begins, and hands
	// its leases back (through the store, closed after g.Wait).
	schedCtx, stopSched := context.WithCancel(bg)
	defer stopSched()
	g.Go(func() error { tuneGC(serveCtx, getenv, logger); return nil })
	g.Go(func() error { return sched.Run(schedCtx) })
	g.Go(func() error { return msrv.Run(serveCtx) })
	g.Go(func() error { return adm.Run(serveCtx, aln) })
	g.Go(func() error { return ls.Run(serveCtx) })
	// PostgreSQL: list changes of any instance poke the poll at once.
	g.Go(func() error { return st.WatchLists(serveCtx, ls.Poke, logger.With("component", "lists")) })
	g.Go(func() error {
		return housekeeper{
			st: st, now: time.Now, log: logger.With("component", "store"),
			ledgerKept:    cfg.Dispatcher.LedgerRetention,
			snapshotsKept: cfg.Store.ListSnapshotRetention,
			campaignsKept: cfg.Store.CampaignRetention,
			sessionIdle:   cfg.Admin.SessionIdle,
			sessionMax:    cfg.Admin.SessionMax,
		}.Run(serveCtx)
	})
	g.Go(func() error {
		reloadOnHUP(serveCtx, logger, func() (dispatcher.Limits, error) {
			c, err := configs.Load(*configFile, getenv)
			if err != nil {
				return dispatcher.Limits{}, err
			}
			return limitsOf(c.RateLimit), nil
		}, disp.SetConfiguredLimits)
		return nil
	})

	select {
	case <-ctx.Done():
		logger.Info("shutting down: no new batches", "deadline", cfg.Dispatcher.ShutdownTimeout)
	case <-failed.Done():
		logger.Error("a component failed; shutting down")
	}
	stopSched()
	deadline, cancel := context.WithTimeout(bg, cfg.Dispatcher.ShutdownTimeout)
	defer cancel()
	if err := disp.Stop(deadline); err != nil {
		logger.Warn("shutdown deadline reached; unsent recipients handed back", "err", err)
	} else {
		logger.Info("all in-flight batches finished")
	}
	stopConn()
	stopServe()
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	logger.Info("pushd stopped")
	return err
}

// blacklister adds invalid tokens to the blacklist in the store and makes
// this instance's index apply it at once.
type blacklister struct {
	st *store.Store
	ls *lists.Lists
}

func (b blacklister) AddListEntries(ctx context.Context, entries []lists.Entry) (int, error) {
	n, err := b.st.AddListEntries(ctx, entries)
	if err == nil {
		b.ls.Poke()
	}
	return n, err
}

// loadAdminTLS returns the admin listener's TLS configuration, nil without
// admin.tls_cert_file.
func loadAdminTLS(c configs.Admin) (*tls.Config, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("admin.tls_cert_file %s, admin.tls_key_file %s: %w", c.TLSCertFile, c.TLSKeyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
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

// limitsOf returns the dispatcher's global and provider limits of the
// ratelimit configuration.
func limitsOf(rl configs.RateLimit) dispatcher.Limits {
	var lim dispatcher.Limits
	lim.GlobalPerSecond, lim.GlobalBurst = rl.GlobalPerSecond, rl.GlobalBurst
	lim.ProviderPerSecond[dispatcher.IOS], lim.ProviderBurst[dispatcher.IOS] = rl.APNsPerSecond, rl.APNsBurst
	lim.ProviderPerSecond[dispatcher.Android], lim.ProviderBurst[dispatcher.Android] = rl.FCMPerSecond, rl.FCMBurst
	return lim
}

// reloadOnHUP reads the configuration again on each SIGHUP until ctx ends
// and applies its rate limits (the ratelimit section). Other keys need a
// restart. A configuration that does not load is refused, with its error
// logged, and the running one kept.
func reloadOnHUP(ctx context.Context, logger *slog.Logger, load func() (dispatcher.Limits, error), apply func(dispatcher.Limits)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		lim, err := load()
		if err != nil {
			logger.Error("SIGHUP: configuration refused; keeping the running one", "err", err)
			continue
		}
		apply(lim)
		logger.Info("SIGHUP: rate limits reloaded (other keys need a restart)",
			"global_per_second", lim.GlobalPerSecond,
			"apns_per_second", lim.ProviderPerSecond[dispatcher.IOS],
			"fcm_per_second", lim.ProviderPerSecond[dispatcher.Android])
	}
}
