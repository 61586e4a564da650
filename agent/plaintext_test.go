package agent

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certops/certops/failure"
)

type countingTransport struct{ calls int }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.calls++
	return nil, http.ErrServerClosed
}

// New refuses plain HTTP to anything but loopback unless InsecurePlaintext
// is set, before a request is made.
func TestNewRefusesPlaintextOffLoopback(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		server   string
		insecure bool
		ok       bool
	}{
		{"http://certops.example.test:8080", false, false},
		{"http://10.0.0.1", false, false},
		{"http://[2001:db8::1]:8080", false, false},
		{"http://127.0.0.2:8080", false, true},
		{"http://localhost:8080", false, true},
		{"http://LOCALHOST", false, true},
		{"http://[::1]:8080", false, true},
		{"http://[::ffff:127.0.0.1]:8080", false, true},
		{"https://certops.example.test", false, true},
		{"http://certops.example.test:8080", true, true},
	} {
		rt := &countingTransport{}
		_, err := New(Config{Server: tc.server, Name: "web-01", TokenFile: token, StateDir: filepath.Join(dir, "state"),
			InsecurePlaintext: tc.insecure, HTTPClient: &http.Client{Transport: rt}})
		if tc.ok != (err == nil) {
			t.Errorf("%s (insecure %v): err %v, want ok %v", tc.server, tc.insecure, err, tc.ok)
		}
		if err != nil && (failure.KindOf(err) != failure.Invalid || !strings.Contains(err.Error(), "insecure-plaintext")) {
			t.Errorf("%s: %v, want an Invalid error naming --insecure-plaintext", tc.server, err)
		}
		if rt.calls != 0 {
			t.Errorf("%s: New sent %d requests", tc.server, rt.calls)
		}
	}
}
