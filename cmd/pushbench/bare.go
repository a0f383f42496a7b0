//lint:file-ignore SA1019 apns2.NewClient's transport is an http2.Transport, deprecated by x/net; the bare client keeps it as apns2 builds it.

package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"

	"github.com/sideshow/apns2"
	"golang.org/x/net/http2"
)

// benchPayload is the APNs payload pushd renders for benchNotification,
// byte for byte (TestBarePushesWhatPushdPushes checks it).
var benchPayload = []byte(`{"aps":{"alert":{"title":"Spring sale","body":"50% off today"},"sound":"default","badge":1},"deeplink":"app://sale"}`)

// bareClient is the reference pushd is measured against: apns2 as its README
// shows it, one client, pointed at the simulator and trusting its CA, nothing
// else tuned.
type bareClient struct {
	client *apns2.Client
}

func newBareClient(simURL string, roots *x509.CertPool) (*bareClient, error) {
	c := apns2.NewClient(tls.Certificate{})
	c.Host = simURL
	tr, ok := c.HTTPClient.Transport.(*http2.Transport)
	if !ok {
		return nil, fmt.Errorf("apns2 client transport is %T, want *http2.Transport", c.HTTPClient.Transport)
	}
	tr.TLSClientConfig.RootCAs = roots
	return &bareClient{client: c}, nil
}

// close drops the client's connection.
func (b *bareClient) close() { b.client.HTTPClient.CloseIdleConnections() }

// notification is what the bare client pushes to token: the headers pushd
// sends for benchNotification (apns-priority 10, apns-push-type alert, no
// topic, no expiration) and its payload.
func notification(token string) apns2.Notification {
	return apns2.Notification{
		DeviceToken: token,
		Priority:    apns2.PriorityHigh,
		PushType:    apns2.PushTypeAlert,
		Payload:     benchPayload,
	}
}

// randomTokens returns n random 64-hex-digit device tokens.
func randomTokens(n int) []string {
	raw := make([]byte, 32*n)
	_, _ = rand.Read(raw) // never fails
	toks := make([]string, n)
	for i := range toks {
		toks[i] = hex.EncodeToString(raw[32*i : 32*i+32])
	}
	return toks
}

// push sends one notification to each token from workers goroutines (see
// pushEach).
func (b *bareClient) push(ctx context.Context, tokens []string, workers int) error {
	return pushEach(ctx, len(tokens), workers, func(ctx context.Context, i int) error {
		n := notification(tokens[i])
		resp, err := b.client.PushWithContext(ctx, &n)
		switch {
		case err != nil:
			return fmt.Errorf("push: %w", err)
		case resp.StatusCode != 200:
			return fmt.Errorf("push: simulator answered %d %s", resp.StatusCode, resp.Reason)
		}
		return nil
	})
}

// pushEach calls send for 0 to n-1 from workers goroutines and returns
// when all are answered. Every send must succeed: the first failure stops
// the run and is returned. When ctx ends (SIGTERM), no new send starts but
// those in flight finish, as pushd's do: the parent may stop the bare
// client as soon as the simulator has counted the last push, before its
// answer has arrived. send gets a context that ctx's end does not cancel.
func pushEach(ctx context.Context, n, workers int, send func(ctx context.Context, i int) error) error {
	sendCtx, failed := context.WithCancelCause(context.WithoutCancel(ctx))
	defer failed(nil)
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && sendCtx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := send(sendCtx, i); err != nil {
					failed(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(sendCtx); err != nil {
		return err
	}
	if d := done.Load(); d < int64(n) {
		return fmt.Errorf("stopped after %d of %d pushes: %w", d, n, context.Cause(ctx))
	}
	return nil
}

// bareRole is the value of $PUSHBENCH_ROLE that makes pushbench the bare
// client: runBare starts pushbench again in that role, so that the bare
// client is a process of its own, timed and measured exactly as pushd is.
const bareRole = "bare"

// runBareChild is pushbench in the bare client's role: push -n
// notifications to the simulator at -sim (trusting the CA in -ca) from
// -concurrency goroutines, then wait for SIGTERM and exit 0. The parent
// reads the process's CPU time until then.
func runBareChild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pushbench (bare client)", flag.ContinueOnError)
	simURL := fs.String("sim", "", "simulator `URL`")
	caFile := fs.String("ca", "", "simulator CA `file`")
	n := fs.Int("n", 0, "notifications")
	workers := fs.Int("concurrency", 0, "goroutines")
	android := fs.Int("android", 0, "percent of the notifications to Android")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the pushes to `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *simURL == "" || *caFile == "" || *n < 1 || *workers < 1 {
		return fmt.Errorf("bare client: bad arguments %q", args)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in %s", *caFile)
	}
	bc, err := newBareClient(*simURL, roots)
	if err != nil {
		return err
	}
	defer bc.close()
	nAndroid := *n * *android / 100
	fc, err := newBareFCM(ctx, *simURL, roots)
	if err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	// Both run together, as two bare clients of one application would.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = bc.push(ctx, randomTokens(*n-nAndroid), *workers) })
	wg.Go(func() { errs[1] = fc.push(ctx, randomTokens(nAndroid), bareFCMWorkers) })
	wg.Wait()
	pprof.StopCPUProfile() // a no-op without -cpuprofile
	if err := errors.Join(errs...); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
