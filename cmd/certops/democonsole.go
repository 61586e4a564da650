package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/certops/certops/backup"
	"github.com/certops/certops/notify"
	"github.com/certops/certops/pki"
	"github.com/certops/certops/secret"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/webhook"
)

// consoleChannel is the demo's NotificationChannel: a webhook to the
// console receiver.
const consoleChannel = "demo-console"

// consoleReceiver is the demo's notification receiver: an HTTP server on
// 127.0.0.1 that checks the webhook signature and prints each alert on the
// demo's output, one line per message.
type consoleReceiver struct {
	url, keyFile string
	srv          *http.Server
	mu           sync.Mutex // serializes writes to out
	out          io.Writer
}

// startConsoleReceiver listens on 127.0.0.1 (the port of an earlier run
// recorded next to keyFile when it is free, else a new one) with the HMAC
// key in keyFile (made when missing).
func startConsoleReceiver(ctx context.Context, out io.Writer, keyFile string) (*consoleReceiver, error) {
	if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("demo notification key: %w", err)
		}
	}
	key, err := secret.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("demo notification key: %w", err)
	}
	portFile := keyFile + ".port"
	var ln net.Listener
	if port, err := os.ReadFile(portFile); err == nil {
		ln, _ = net.Listen("tcp", "127.0.0.1:"+strings.TrimSpace(string(port)))
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("demo notification receiver: %w", err)
		}
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := os.WriteFile(portFile, []byte(port+"\n"), 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	c := &consoleReceiver{url: "http://" + ln.Addr().String() + "/notify", keyFile: keyFile, out: out}
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.receive(w, r, []byte(key)) }),
		ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// receive prints one signed notification.
func (c *consoleReceiver) receive(w http.ResponseWriter, r *http.Request, key []byte) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || r.Method != http.MethodPost || r.Header.Get(notify.SignatureHeader) != webhook.Sign(key, body) {
		http.Error(w, "bad notification", http.StatusBadRequest)
		return
	}
	var m notify.WebhookPayload
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, "bad notification", http.StatusBadRequest)
		return
	}
	subject := ""
	if m.Alert.Subject != "" {
		subject = " " + m.Alert.Subject
	}
	c.mu.Lock()
	fmt.Fprintf(c.out, "certops demo: alert %s: %s (%s)%s: %s\n", m.Status, m.Alert.Name, m.Alert.Severity, subject, m.Alert.Summary)
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// channelYAML is the NotificationChannel that posts to the receiver.
func (c *consoleReceiver) channelYAML() string {
	return fmt.Sprintf(`# yaml-language-server: $schema=../../docs/schema/certops-v1.json
#
# The demo's alerts go to a receiver of its own that prints them on the
# console (the shipped example's Slack and webhook channels need secrets and
# hosts the demo does not have).

apiVersion: certops/v1
kind: NotificationChannel
metadata:
  name: %s
spec:
  webhook:
    url: %s
    hmacSecretFile: %s
`, consoleChannel, c.url, c.keyFile)
}

// Close stops the receiver.
func (c *consoleReceiver) Close() error { return c.srv.Close() }

// refreshChannel points the demo channel of an existing demo repository at
// the receiver (its port may have changed since the last run), committing
// the change if there is one.
func (c *consoleReceiver) refreshChannel(repoDir string) error {
	file := filepath.Join(repoDir, "notifications.yaml")
	if b, err := os.ReadFile(file); err == nil && string(b) == c.channelYAML() {
		return nil
	}
	if err := os.WriteFile(file, []byte(c.channelYAML()), 0o644); err != nil {
		return err
	}
	return commitAll(repoDir, "demo: the console receiver listens on "+c.url)
}

// demoCA loads the demo CA from dir, or creates it there.
func demoCA(dir string) (*createdCA, error) {
	c := &createdCA{certFile: filepath.Join(dir, "ca.crt"), keyFile: filepath.Join(dir, "ca.key")}
	ca, err := pki.LoadCA(c.certFile, c.keyFile)
	if err == nil {
		c.ca = ca
		return c, nil
	}
	if _, statErr := os.Stat(c.certFile); !errors.Is(statErr, fs.ErrNotExist) {
		return nil, fmt.Errorf("demo CA in %s: %w", dir, err)
	}
	return initCA(dir, pki.CAOptions{CommonName: "certops demo CA"}, false)
}

// demoBackup takes one backup of the demo database as the config's
// BackupPolicy says (whatever its schedule), before the reconciler starts.
func demoBackup(ctx context.Context, url, repoDir string, getenv func(string) string, logger *slog.Logger) error {
	var policy *spec.Object
	for _, f := range spec.ReadFiles(os.DirFS(repoDir)) {
		for _, o := range f.Objects {
			if o.Kind == spec.KindBackupPolicy {
				policy = o
			}
		}
	}
	if policy == nil {
		return nil
	}
	tools, err := backup.FindTools()
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, url, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	p, err := backup.NewPolicy(policy.Name, *policy.Spec.(*spec.BackupPolicySpec), getenv)
	if err != nil {
		return err
	}
	rep, err := backup.Run(ctx, st, p, backup.Options{DatabaseURL: url, Tools: tools, Force: true})
	if err == nil {
		logger.Info("demo backup written", "object", rep.Run.Object, "destination", p.Destination.String())
	}
	return err
}
