package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushd/pushd/configs"
	"github.com/pushd/pushd/dispatcher"
	"github.com/pushd/pushd/push/apns"
	"github.com/pushd/pushd/push/fcm"
	"github.com/pushd/pushd/push/sim"
)

// Provider hosts.
const (
	apnsProduction = "https://api.push.apple.com"
	apnsSandbox    = "https://api.sandbox.push.apple.com"
)

// newProviders builds the APNs and FCM senders. A provider with neither
// credentials nor a host/endpoint is pointed at the built-in simulator, so
// that pushd works end to end on a fresh machine.
func newProviders(ctx context.Context, cfg *configs.Config, logger *slog.Logger, reg prometheus.Registerer) (map[dispatcher.Platform]dispatcher.Provider, func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	var simSrv *sim.Server
	simulator := func() (*sim.Server, error) {
		if simSrv != nil {
			return simSrv, nil
		}
		s, err := sim.New(sim.Config{Latency: cfg.Sim.Latency}, logger.With("component", "sim"), reg)
		if err != nil {
			return nil, fmt.Errorf("built-in simulator: %w", err)
		}
		if err := s.Start("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("built-in simulator: %w", err)
		}
		closers = append(closers, func() { _ = s.Stop() })
		simSrv = s
		logger.Info("built-in simulator started", "url", s.URL())
		return s, nil
	}

	// APNs.
	ac := apns.Config{
		KeyFile:     cfg.APNs.KeyFile,
		KeyID:       cfg.APNs.KeyID,
		TeamID:      cfg.APNs.TeamID,
		CertFile:    cfg.APNs.CertFile,
		Topic:       cfg.APNs.Topic,
		Connections: cfg.APNs.Connections,
		Timeout:     cfg.APNs.Timeout,
	}
	if cfg.APNs.CertPasswordFile != "" {
		pw, err := os.ReadFile(cfg.APNs.CertPasswordFile)
		if err != nil {
			return nil, closeAll, fmt.Errorf("apns.cert_password_file: %w", err)
		}
		ac.CertPassword = strings.TrimRight(string(pw), "\r\n")
	}
	roots, err := rootCAs(cfg.APNs.CAFile)
	if err != nil {
		return nil, closeAll, fmt.Errorf("apns.ca_file: %w", err)
	}
	ac.RootCAs = roots
	switch h := cfg.APNs.Host; {
	case h == "production":
		ac.Host = apnsProduction
	case h == "sandbox" || h == "development":
		ac.Host = apnsSandbox
	case h == "" && cfg.APNs.HasCredentials():
		ac.Host = apnsProduction
	case h == "":
		s, err := simulator()
		if err != nil {
			return nil, closeAll, err
		}
		ac.Host, ac.RootCAs = s.URL(), s.CertPool()
		logger.Warn("no APNs credentials or host configured: iOS pushes go to the built-in simulator", "url", s.URL())
	default:
		ac.Host = h
	}
	as, err := apns.New(ac, logger.With("component", "apns"))
	if err != nil {
		return nil, closeAll, fmt.Errorf("apns: %w", err)
	}
	closers = append(closers, as.Close)

	// FCM.
	fc := fcm.Config{
		Endpoint:        cfg.FCM.Endpoint,
		CredentialsFile: cfg.FCM.CredentialsFile,
		ProjectID:       cfg.FCM.ProjectID,
		Concurrency:     cfg.FCM.Workers,
		Timeout:         cfg.FCM.Timeout,
	}
	if fc.RootCAs, err = rootCAs(cfg.FCM.CAFile); err != nil {
		return nil, closeAll, fmt.Errorf("fcm.ca_file: %w", err)
	}
	if fc.Endpoint == "" && fc.CredentialsFile == "" {
		s, err := simulator()
		if err != nil {
			return nil, closeAll, err
		}
		fc.Endpoint, fc.RootCAs = s.URL()+"/v1", s.CertPool()
		logger.Warn("no FCM credentials or endpoint configured: Android pushes go to the built-in simulator", "url", s.URL())
	}
	if fc.ProjectID == "" && fc.CredentialsFile == "" {
		fc.ProjectID = "pushd-sim"
	}
	fs, err := fcm.New(ctx, fc, logger.With("component", "fcm"))
	if err != nil {
		return nil, closeAll, fmt.Errorf("fcm: %w", err)
	}
	closers = append(closers, fs.Close)

	return map[dispatcher.Platform]dispatcher.Provider{
		dispatcher.IOS:     as,
		dispatcher.Android: fs,
	}, closeAll, nil
}

// rootCAs returns nil (system roots, honouring SSL_CERT_FILE) when file is
// empty, else the system roots plus the PEM certificates in file.
func rootCAs(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", file)
	}
	return pool, nil
}
