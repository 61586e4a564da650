package gitsource

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// progressLog relays the progress messages a git server sends during a
// fetch ("Counting objects:  45% (450/1000)", lines ended by \r or \n) to
// the log: at most one record per interval, the latest message, and the
// last one when the fetch ends (flush).
type progressLog struct {
	logger   *slog.Logger
	ref      string
	interval time.Duration
	now      func() time.Time

	mu          sync.Mutex
	partial     []byte // the text after the last line break
	latest      string // the last whole message not logged yet
	lastLogged  time.Time
	loggedCount int
}

func newProgressLog(logger *slog.Logger, ref string, interval time.Duration) *progressLog {
	return &progressLog{logger: logger, ref: ref, interval: interval, now: time.Now}
}

// Write takes the server's progress stream; it never fails.
func (p *progressLog) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexAny(p.partial, "\r\n")
		if i < 0 {
			break
		}
		if msg := strings.TrimSpace(string(p.partial[:i])); msg != "" {
			p.latest = msg
		}
		p.partial = p.partial[i+1:]
	}
	if len(p.partial) > 4096 { // a server that never ends a line
		p.partial = p.partial[:0]
	}
	if p.latest != "" && p.now().Sub(p.lastLogged) >= p.interval {
		p.logLocked()
	}
	return len(b), nil
}

// flush logs the last message if it was not logged yet.
func (p *progressLog) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if msg := strings.TrimSpace(string(p.partial)); msg != "" {
		p.latest, p.partial = msg, p.partial[:0]
	}
	if p.latest != "" {
		p.logLocked()
	}
}

func (p *progressLog) logLocked() {
	p.logger.Info("fetch progress", "ref", p.ref, "progress", p.latest)
	p.latest, p.lastLogged = "", p.now()
	p.loggedCount++
}
