package agent

import (
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
