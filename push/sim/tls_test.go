package sim

import (
	"bytes"
	"testing"
)

func TestCertificates(t *testing.T) {
	s, err := New(Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(s.CACertPEM(), []byte("-----BEGIN CERTIFICATE-----")) {
		t.Errorf("CACertPEM = %.40q", s.CACertPEM())
	}
	leaf := s.certs.leaf.Leaf
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("leaf certificate for %s: %v", host, err)
		}
	}
	if err := leaf.VerifyHostname("example.com"); err == nil {
		t.Error("leaf certificate valid for example.com")
	}
}
