package main

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// httpLimits bound what one client may hold of an HTTP server: how long it
// may take to send a request (headers, then body), to read the answer,
// how long an idle keep-alive connection stays, and how many connections
// are open at once (more wait in the kernel's backlog).
type httpLimits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxConnections    int
}

// defaultHTTPLimits are the flags' defaults, and what a zero field means.
var defaultHTTPLimits = httpLimits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
	WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxConnections: 1024}

// declareHTTPLimits declares the flags of l on f.
func declareHTTPLimits(f *flagSet, l *httpLimits) {
	d := defaultHTTPLimits
	f.DurationEnv(&l.ReadHeaderTimeout, "http-read-header-timeout", d.ReadHeaderTimeout, "longest time a client may take to send a request's headers")
	f.DurationEnv(&l.ReadTimeout, "http-read-timeout", d.ReadTimeout, "longest time a client may take to send a whole request, body included; a slower one is disconnected")
	f.DurationEnv(&l.WriteTimeout, "http-write-timeout", d.WriteTimeout, "longest time from the end of a request's headers to the end of its answer")
	f.DurationEnv(&l.IdleTimeout, "http-idle-timeout", d.IdleTimeout, "how long an idle keep-alive connection is kept open")
	f.IntEnv(&l.MaxConnections, "http-max-connections", d.MaxConnections, "most connections served at once; more wait to be accepted")
}

// withDefaults is l with every zero (or negative) field set from
// defaultHTTPLimits.
func (l httpLimits) withDefaults() httpLimits {
	d := defaultHTTPLimits
	def := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	def(&l.ReadTimeout, d.ReadTimeout)
	def(&l.WriteTimeout, d.WriteTimeout)
	def(&l.IdleTimeout, d.IdleTimeout)
	if l.MaxConnections <= 0 {
		l.MaxConnections = d.MaxConnections
	}
	return l
}

// newHTTPServer is an http.Server for h with the timeouts of l (zero
// fields take the defaults). Serve it on limitListener(ln,
// l.MaxConnections).
func newHTTPServer(h http.Handler, l httpLimits, logger *slog.Logger) *http.Server {
	l = l.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

// limitListener accepts at most n connections at once (n <= 0: the
// default); Accept waits while n are open.
func limitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		n = defaultHTTPLimits.MaxConnections
	}
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
