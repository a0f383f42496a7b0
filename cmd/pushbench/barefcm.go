package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/pushd/pushd/push/fcm"
)

// bareFCMWorkers is the bare firebase client's goroutines: pushd's default
// fcm.workers.
const bareFCMWorkers = 128

// bareFCM is the FCM reference: the firebase messaging client as its
// documentation shows it, one client, pointed at the simulator's FCM v1
// endpoint with a default HTTP client that trusts the simulator's CA, no
// credentials (the stand-in takes none), nothing else tuned.
type bareFCM struct {
	client *messaging.Client
	msg    messaging.Message // the benchmark notification as pushd renders it
}

func newBareFCM(ctx context.Context, simURL string, roots *x509.CertPool) (*bareFCM, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	app, err := firebase.NewApp(ctx, &firebase.Config{ProjectID: "pushbench"},
		option.WithHTTPClient(&http.Client{Transport: tr}), option.WithEndpoint(simURL+"/v1"))
	if err != nil {
		return nil, fmt.Errorf("firebase app: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("firebase messaging: %w", err)
	}
	f := &bareFCM{client: client}
	n := benchNotification()
	b, err := fcm.RenderMessage(&n)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &f.msg); err != nil {
		return nil, fmt.Errorf("pushd's FCM message: %w", err)
	}
	return f, nil
}

// push sends the message to each token from workers goroutines (see
// pushEach).
func (f *bareFCM) push(ctx context.Context, tokens []string, workers int) error {
	return pushEach(ctx, len(tokens), workers, func(ctx context.Context, i int) error {
		m := f.msg
		m.Token = tokens[i]
		if _, err := f.client.Send(ctx, &m); err != nil {
			return fmt.Errorf("fcm send: %w", err)
		}
		return nil
	})
}
