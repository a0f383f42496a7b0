package apns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sideshow/apns2"
	"golang.org/x/net/http2"

	"github.com/pushd/pushd/dispatcher"
)

func TestSendConcurrentRoundRobin(t *testing.T) {
	f := startFake(t, nil)
	s := newSender(t, Config{Host: f.srv.URL, Topic: "t", RootCAs: f.roots(), Connections: 3})
	m := prepare(t, s, alert())
	const n = 300
	results := make(chan dispatcher.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results <- send(m, deviceToken(fmt.Sprint(i))) })
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.Outcome != dispatcher.Sent {
			t.Fatalf("send: %+v", r)
		}
	}
	conns := map[string]bool{}
	for _, r := range f.received() {
		conns[r.remote] = true
	}
	if len(f.received()) != n || len(conns) != 3 {
		t.Errorf("stand-in got %d pushes over %d connections, want %d over 3", len(f.received()), len(conns), n)
	}
}

func TestSendRefusesServerWithoutHTTP2(t *testing.T) {
	// A TLS server that ignores ALPN (a Go server would refuse the
	// handshake itself): the dialer must notice HTTP/2 was not agreed.
	donor := httptest.NewUnstartedServer(http.NotFoundHandler())
	donor.StartTLS()
	cert, roots := donor.TLS.Certificates[0], x509.NewCertPool()
	roots.AddCert(donor.Certificate())
	donor.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()

	s := newSender(t, Config{Host: "https://" + ln.Addr().String(), RootCAs: roots, Timeout: 2 * time.Second})
	got := send(prepare(t, s, alert()), deviceToken("h1"))
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "network"})
	if !strings.Contains(got.Err.Error(), "does not speak HTTP/2") {
		t.Errorf("Err = %v, want it to say the server lacks HTTP/2", got.Err)
	}
}

func TestSendUntrustedServer(t *testing.T) {
	f := startFake(t, nil)
	s := newSender(t, Config{Host: f.srv.URL, Timeout: 2 * time.Second}) // system roots only
	got := send(prepare(t, s, alert()), deviceToken("untrusted"))
	checkResult(t, got, dispatcher.Result{Outcome: dispatcher.RetryLater, Reason: "network"})
	if len(f.received()) != 0 {
		t.Error("push reached a server whose certificate is not trusted")
	}
}

func TestSendH2C(t *testing.T) {
	f := &fakeAPNs{answers: map[string]answerRow{}}
	srv := httptest.NewUnstartedServer(f)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://") {
		t.Fatalf("server URL %s", srv.URL)
	}
	s := newSender(t, Config{Host: srv.URL, Topic: "t"})
	m := prepare(t, s, alert())
	tok := deviceToken("h2c")
	f.answer(tok, answerRow{status: 410, reason: "Unregistered", timestamp: unregisteredAt.UnixMilli()})
	if r := send(m, deviceToken("h2c ok")); r.Outcome != dispatcher.Sent {
		t.Fatalf("send over h2c: %+v", r)
	}
	checkResult(t, send(m, tok), dispatcher.Result{Outcome: dispatcher.InvalidToken, Reason: "Unregistered", Status: 410, At: unregisteredAt})
	for _, r := range f.received() {
		if r.proto != 2 {
			t.Errorf("request over HTTP/%d, want HTTP/2", r.proto)
		}
	}
}

// BenchmarkPush compares a push through Sender with a push through a bare
// apns2 client (its own transport, as apns2 builds it) against the same
// local stand-in. The ratio, not the absolute number, is what matters.
func BenchmarkPush(b *testing.B) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	b.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	n := &dispatcher.Notification{Title: "Spring sale", Body: "50% off today", Data: map[string]json.RawMessage{"deeplink": json.RawMessage(`"app://sale"`)}}
	tok := deviceToken("bench")

	b.Run("pushd", func(b *testing.B) {
		s, err := New(Config{Host: srv.URL, Topic: "t", RootCAs: roots, Connections: 1}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		m, err := s.Prepare(n)
		if err != nil {
			b.Fatal(err)
		}
		r := &dispatcher.Recipient{Platform: dispatcher.IOS, Token: tok}
		b.ReportAllocs()
		b.SetParallelism(32) // many streams in flight, as in production
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if res := m.Send(context.Background(), r); res.Outcome != dispatcher.Sent {
					b.Error(res)
					return
				}
			}
		})
	})
	b.Run("bare-apns2", func(b *testing.B) {
		c := apns2.NewClient(tls.Certificate{})
		c.Host = srv.URL
		c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: roots} //lint:ignore SA1019 apns2's own transport type
		payload, _ := renderPayload(n, false)
		b.ReportAllocs()
		b.SetParallelism(32) // many streams in flight, as in production
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := c.PushWithContext(context.Background(), &apns2.Notification{DeviceToken: tok, Topic: "t", Priority: 10, PushType: "alert", Payload: payload})
				if err != nil || res.StatusCode != 200 {
					b.Error(res, err)
					return
				}
			}
		})
	})
}
