// Command pushsim runs the APNs and FCM simulator of package push/sim on one
// TLS port, for demos, tests and benchmarks of pushd: the real apns2 and
// firebase clients talk to it as to Apple and Google. It is not a load
// generator and delivers nothing to devices.
//
// Usage:
//
//	pushsim [-addr 127.0.0.1:8443] [-ca-out ca.pem] [-service-account-out sa.json]
//	        [-latency 5ms] [-jitter 2ms] [-apns-errors too_many=0.05] [-fcm-errors ...]
//	        [-retry-after 1s] [-track-tokens=true] [-record-last 0] [-seed 0]
//	        [-log-format text|json] [-log-level info]
//
// Every flag can also be set with an environment variable PUSHSIM_<FLAG>,
// dashes as underscores (PUSHSIM_ADDR, PUSHSIM_APNS_ERRORS...); a flag on the
// command line wins. When ready it prints "pushsim listening on <URL>".
// Besides the simulator's routes (see push/sim) it serves Prometheus metrics
// at GET /metrics. SIGINT or SIGTERM stops it with exit code 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushd/pushd/push/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushsim:", err)
		os.Exit(1)
	}
}

// options are the parsed command line.
type options struct {
	addr, caOut, serviceAccountOut, project string
	latency, jitter, retryAfter             time.Duration
	apnsErrors, fcmErrors                   string
	trackTokens                             bool
	recordLast                              int
	seed                                    int64
	logFormat, logLevel                     string
}

// envName returns the environment variable that sets flag name.
func envName(name string) string {
	return "PUSHSIM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseFlags reads args, with defaults from the environment through getenv.
// It returns flag.ErrHelp, after printing the usage to stdout, for -h.
func parseFlags(args []string, getenv func(string) string, stdout io.Writer) (*options, error) {
	var o options
	fs := flag.NewFlagSet("pushsim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8443", "`host:port` to listen on (TLS, HTTP/2 and HTTP/1.1); port 0 picks a free one")
	fs.StringVar(&o.caOut, "ca-out", "", "write the CA certificate (PEM) to this `file`, for clients to trust")
	fs.StringVar(&o.serviceAccountOut, "service-account-out", "", "write a Google service-account JSON whose token_uri is this simulator to this `file`")
	fs.StringVar(&o.project, "project", "pushd-sim", "Firebase project id of the service account")
	fs.DurationVar(&o.latency, "latency", 0, "latency added to every answer")
	fs.DurationVar(&o.jitter, "jitter", 0, "uniform jitter around the latency")
	fs.StringVar(&o.apnsErrors, "apns-errors", "", "random APNs error `mix`, e.g. unregistered=0.01,too_many=0.05 (keys: unregistered, bad_token, too_many, unavailable, internal)")
	fs.StringVar(&o.fcmErrors, "fcm-errors", "", "random FCM error `mix`, same syntax as -apns-errors")
	fs.DurationVar(&o.retryAfter, "retry-after", 0, "Retry-After sent with 429 and 503 answers (0: none)")
	fs.BoolVar(&o.trackTokens, "track-tokens", true, "count requests per device token (turn off for huge load runs)")
	fs.IntVar(&o.recordLast, "record-last", 0, "keep the last `n` requests per provider for GET /sim/recorded/{apns,fcm}")
	fs.Int64Var(&o.seed, "seed", 0, "seed of the error mix (0: random)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")

	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: invalid value for -%s: %w", envName(f.Name), v, f.Name, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: pushsim [flags]\n\nAPNs and FCM simulator for pushd. Every flag may also be set as PUSHSIM_<FLAG>.\n\nFlags:")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, fmt.Errorf("%w (see pushsim -h)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (see pushsim -h)", fs.Args())
	}
	return &o, nil
}

// config turns the options into the simulator's configuration.
func (o *options) config() (sim.Config, error) {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"latency", o.latency}, {"jitter", o.jitter}, {"retry-after", o.retryAfter}} {
		if d.v < 0 {
			return sim.Config{}, fmt.Errorf("-%s %v: must be 0 or more", d.flag, d.v)
		}
	}
	if o.recordLast < 0 {
		return sim.Config{}, fmt.Errorf("-record-last %d: must be 0 or more", o.recordLast)
	}
	apnsMix, err := sim.ParseErrorMix(o.apnsErrors)
	if err != nil {
		return sim.Config{}, fmt.Errorf("-apns-errors: %w", err)
	}
	fcmMix, err := sim.ParseErrorMix(o.fcmErrors)
	if err != nil {
		return sim.Config{}, fmt.Errorf("-fcm-errors: %w", err)
	}
	cfg := sim.Config{
		Latency:     o.latency,
		Jitter:      o.jitter,
		APNsErrors:  apnsMix,
		FCMErrors:   fcmMix,
		RetryAfter:  o.retryAfter,
		TrackTokens: o.trackTokens,
		Seed:        o.seed,
		RecordLast:  o.recordLast,
	}
	if err := cfg.Validate(); err != nil {
		return sim.Config{}, err
	}
	return cfg, nil
}

// logger builds the process logger on w.
func (o *options) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", o.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", o.logFormat)
}

// run starts the simulator as args and the environment say, prints its URL
// to stdout when ready, and serves until ctx is done. Logs go to stdout too.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o, err := parseFlags(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	logger, err := o.logger(stdout)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	s, err := sim.New(cfg, logger, reg)
	if err != nil {
		return err
	}
	s.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if err := s.Start(o.addr); err != nil {
		return err
	}
	defer func() { _ = s.Stop() }()

	url := reachableURL(s.Addr())
	if o.caOut != "" {
		if err := os.WriteFile(o.caOut, s.CACertPEM(), 0o644); err != nil {
			return fmt.Errorf("-ca-out: %w", err)
		}
	}
	if o.serviceAccountOut != "" {
		if err := sim.WriteServiceAccount(o.serviceAccountOut, url+"/token", o.project); err != nil {
			return fmt.Errorf("-service-account-out: %w", err)
		}
	}
	logger.Info("pushsim ready",
		slog.String("url", url),
		slog.Duration("latency", cfg.Latency), slog.Duration("jitter", cfg.Jitter),
		slog.String("apns_errors", cfg.APNsErrors.String()), slog.String("fcm_errors", cfg.FCMErrors.String()),
		slog.Duration("retry_after", cfg.RetryAfter), slog.Bool("track_tokens", cfg.TrackTokens))
	fmt.Fprintf(stdout, "pushsim listening on %s\n", url)

	<-ctx.Done()
	st := s.Stats()
	logger.Info("pushsim stopping",
		slog.Int64("apns_requests", st.APNs.Requests), slog.Int64("apns_accepted", st.APNs.Accepted),
		slog.Int64("fcm_requests", st.FCM.Requests), slog.Int64("fcm_accepted", st.FCM.Accepted),
		slog.Int("tokens", st.Tokens), slog.Int("duplicates", st.Duplicates))
	return s.Stop()
}

// reachableURL returns the https URL clients use for the bound address: an
// unspecified host (0.0.0.0, ::) becomes the loopback address the
// certificate is valid for.
func reachableURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "https://" + addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, port)
}
