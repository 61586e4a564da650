package main

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveLimited serves h on loopback as serve does (newHTTPServer on a
// limitListener) and returns its address.
func serveLimited(t *testing.T, l httpLimits, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(h, l, slog.New(slog.DiscardHandler))
	go srv.Serve(limitListener(ln, l.MaxConnections))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// closedWithin dials addr, sends head and then nothing, and reports how
// long the server took to close the connection (failing after limit).
func closedWithin(t *testing.T, addr, head string, limit time.Duration) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(start.Add(limit))
	_, err = io.Copy(io.Discard, c) // returns at EOF (closed by the server) or the deadline
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %s", limit)
	}
	return took
}

// A client that sends headers and then its body too slowly, or headers
// slowly, is disconnected within the read timeouts.
func TestSlowClientsAreDisconnected(t *testing.T) {
	read := 500 * time.Millisecond
	readBody := func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	addr := serveLimited(t, httpLimits{ReadHeaderTimeout: read, ReadTimeout: read, WriteTimeout: time.Second,
		IdleTimeout: read, MaxConnections: 4}, http.HandlerFunc(readBody))
	slowBody := "POST /hooks/generic HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial"
	if took := closedWithin(t, addr, slowBody, 10*read); took > 3*read {
		t.Errorf("slow body: closed after %s, want about %s", took, read)
	}
	if took := closedWithin(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n", 10*read); took > 3*read {
		t.Errorf("slow headers: closed after %s, want about %s", took, read)
	}
}

// At most MaxConnections are served at once: the next waits until one
// closes.
func TestConnectionsAreBounded(t *testing.T) {
	addr := serveLimited(t, httpLimits{MaxConnections: 2, IdleTimeout: time.Minute}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	get := func(c net.Conn) error {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), "ok") {
			t.Errorf("answer %q", b)
		}
		return nil
	}
	var open []net.Conn
	for range 2 { // two keep-alive connections, held open
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := get(c); err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	third, err := net.Dial("tcp", addr) // the kernel accepts; the server does not yet
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	third.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if err := get(third); err == nil {
		t.Fatal("a third connection was served while two were open")
	}
	third.Close()
	open[0].Close()
	fourth, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fourth.Close()
	fourth.SetDeadline(time.Now().Add(5 * time.Second))
	if err := get(fourth); err != nil {
		t.Errorf("after one closed: %v", err)
	}
}
