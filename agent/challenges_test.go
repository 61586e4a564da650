package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certops/certops/agentproto"
)

// The server chooses token and webroot, but never where else the agent
// writes: both are checked before a file is written.
func TestChallengePath(t *testing.T) {
	for _, tt := range []struct {
		ch      agentproto.Challenge
		want    string
		wantErr string
	}{
		{ch: agentproto.Challenge{Token: "abc-DEF_123", Webroot: "/var/www/html"},
			want: "/var/www/html/.well-known/acme-challenge/abc-DEF_123"},
		{ch: agentproto.Challenge{Token: "../../etc/passwd", Webroot: "/var/www"}, wantErr: "not base64url"},
		{ch: agentproto.Challenge{Token: "a.b", Webroot: "/var/www"}, wantErr: "not base64url"},
		{ch: agentproto.Challenge{Token: "", Webroot: "/var/www"}, wantErr: "not base64url"},
		{ch: agentproto.Challenge{Token: strings.Repeat("a", agentproto.MaxTokenLength+1), Webroot: "/var/www"}, wantErr: "not base64url"},
		{ch: agentproto.Challenge{Token: "abc", Webroot: "var/www"}, wantErr: "clean absolute path"},
		{ch: agentproto.Challenge{Token: "abc", Webroot: "/var/www/../../etc"}, wantErr: "clean absolute path"},
	} {
		got, err := challengePath(tt.ch)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("challengePath(%+v) = %q, %v; want an error containing %q", tt.ch, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("challengePath(%+v) = %q, %v; want %q", tt.ch, got, err, tt.want)
		}
	}
}

// An http-01 challenge is written under its webroot, confirmed, and removed
// once no longer listed; one whose webroot is outside AllowedDirs is
// neither written nor confirmed, so the order fails instead.
func TestChallengesOutsideAllowedDirsAreRefused(t *testing.T) {
	e := newEnv(t)
	root := t.TempDir()
	inside, outside := filepath.Join(root, "www"), filepath.Join(root, "elsewhere")
	e.cfg.AllowedDirs = []string{filepath.Dir(e.dir), inside}
	e.srv.challenges = []agentproto.Challenge{
		{Token: "tok-inside", KeyAuth: "tok-inside.thumb", Webroot: inside, Certificate: "shop"},
		{Token: "tok-outside", KeyAuth: "tok-outside.thumb", Webroot: outside, Certificate: "shop"},
	}
	a := e.newAgent()
	e.sync(a)

	insideFile := filepath.Join(inside, agentproto.ChallengePathPrefix, "tok-inside")
	if b, err := os.ReadFile(insideFile); err != nil || string(b) != "tok-inside.thumb" {
		t.Errorf("challenge under an allowed webroot: %q, %v; want the key authorization", b, err)
	}
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Errorf("webroot outside the allowed directories was touched: %v", err)
	}
	e.srv.mu.Lock()
	ready := slices.Clone(e.srv.ready)
	e.srv.mu.Unlock()
	if !slices.Equal(ready, []string{"tok-inside"}) {
		t.Errorf("confirmed tokens = %q, want only tok-inside", ready)
	}

	e.srv.set(func(s *protoServer) { s.challenges = nil })
	e.sync(a)
	if _, err := os.Stat(insideFile); !os.IsNotExist(err) {
		t.Errorf("challenge file still there after the challenge ended: %v", err)
	}
}
