package testkit

import (
	"crypto/tls"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TLSService is a TLS service on 127.0.0.1 that serves, on every
// handshake, the certificate and key files as they are on disk at that
// moment, unless frozen on a pair read earlier: a service that did not
// load its renewed files. It completes handshakes and nothing more; it
// stops when the test ends.
type TLSService struct {
	Addr   string // 127.0.0.1:PORT
	frozen atomic.Pointer[tls.Certificate]
}

// StartTLSService starts a TLSService serving certFile and keyFile.
func StartTLSService(t testing.TB, certFile, keyFile string) *TLSService {
	t.Helper()
	s := &TLSService{}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.frozen.Load(); c != nil {
				return c, nil
			}
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			return &c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_ = conn.(*tls.Conn).Handshake()
			})
		}
	})
	return s
}

// Freeze keeps serving the pair certFile and keyFile hold now, whatever
// the files hold later.
func (s *TLSService) Freeze(t testing.TB, certFile, keyFile string) {
	t.Helper()
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s.FreezeOn(c)
}

// FreezeOn keeps serving pair (read earlier), whatever the files hold.
func (s *TLSService) FreezeOn(pair tls.Certificate) { s.frozen.Store(&pair) }

// Thaw serves the files on disk again.
func (s *TLSService) Thaw() { s.frozen.Store(nil) }
