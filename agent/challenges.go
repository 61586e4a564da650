package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/atomicfile"
)

// http-01 challenges: while an ACME order of a certificate this agent
// deploys is in progress, the assignments list its challenges. The agent
// writes each key authorization to WEBROOT/.well-known/acme-challenge/TOKEN
// (the webroot its web server serves, as certbot --webroot does), confirms
// it to the server, and removes the file once the challenge is no longer
// listed. The files written are recorded in StateDir/challenges.json so a
// restarted agent still removes them.

// serveChallenges brings the challenge files in line with list. Only a
// failure to reach the server is returned (the pass stops); a file that
// cannot be written is logged and not confirmed, so the order fails with
// the agent named.
func (a *Agent) serveChallenges(ctx context.Context, list []agentproto.Challenge) error {
	listed := map[string]bool{}
	for _, ch := range list {
		listed[ch.Token] = true
		path, err := challengePath(ch)
		if err == nil {
			err = a.allowed(path)
		}
		if err != nil {
			a.log.Warn("ignoring an invalid http-01 challenge", "certificate", ch.Certificate, "err", err)
			continue
		}
		if a.served.confirmed(ch.Token) && ch.Ready && fileHolds(path, ch.KeyAuth) {
			continue
		}
		if !fileHolds(path, ch.KeyAuth) {
			a.served.add(ch.Token, path) // recorded first: a crash after writing still cleans up
			if err := writeChallenge(path, ch.KeyAuth); err != nil {
				a.log.Error("cannot write the http-01 challenge file", "certificate", ch.Certificate, "path", path, "err", err)
				continue
			}
		}
		if err := a.client.challengeReady(ctx, ch.Token); err != nil {
			if isServerTrouble(err) {
				return err
			}
			a.log.Warn("server refused the http-01 confirmation", "certificate", ch.Certificate, "err", err)
			continue
		}
		a.served.confirm(ch.Token)
		a.log.Info("http-01 challenge in place", "certificate", ch.Certificate, "path", path)
	}
	for token, path := range a.served.all() {
		if listed[token] {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("cannot remove the http-01 challenge file", "path", path, "err", err)
			continue
		}
		a.served.remove(token)
		a.log.Debug("http-01 challenge removed", "path", path)
	}
	return nil
}

// challengePath is where ch's file goes; the token and webroot are checked
// so the server cannot make the agent write elsewhere.
func challengePath(ch agentproto.Challenge) (string, error) {
	if !agentproto.ValidToken(ch.Token) {
		return "", fmt.Errorf("token %q is not base64url", ch.Token)
	}
	if !filepath.IsAbs(ch.Webroot) || filepath.Clean(ch.Webroot) != ch.Webroot {
		return "", fmt.Errorf("webroot %q is not a clean absolute path", ch.Webroot)
	}
	return filepath.Join(ch.Webroot, filepath.FromSlash(agentproto.ChallengePathPrefix), ch.Token), nil
}

func fileHolds(path, content string) bool {
	b, err := os.ReadFile(path)
	return err == nil && string(b) == content
}

// writeChallenge writes the key authorization world-readable (the web
// server serves it), atomically, creating the directories.
func writeChallenge(path, keyAuth string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, []byte(keyAuth), 0o644)
}

// challengeFiles is StateDir/challenges.json: the files written, by token,
// and which of them the server has confirmed (in memory only).
type challengeFiles struct {
	path  string
	log   *slog.Logger
	files map[string]string // token → file
	ok    map[string]bool   // token → confirmed
}

func openChallengeFiles(stateDir string, log *slog.Logger) *challengeFiles {
	c := &challengeFiles{path: filepath.Join(stateDir, "challenges.json"), log: log,
		files: map[string]string{}, ok: map[string]bool{}}
	b, err := os.ReadFile(c.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("cannot read the http-01 challenge record", "err", err)
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &c.files); err != nil {
			log.Warn("ignoring a corrupt http-01 challenge record", "err", err)
		}
	}
	return c
}

func (c *challengeFiles) confirmed(token string) bool { return c.ok[token] }
func (c *challengeFiles) confirm(token string)        { c.ok[token] = true }

func (c *challengeFiles) all() map[string]string { return maps.Clone(c.files) }

func (c *challengeFiles) add(token, path string) {
	if c.files[token] == path {
		return
	}
	c.files[token] = path
	c.save()
}

func (c *challengeFiles) remove(token string) {
	delete(c.files, token)
	delete(c.ok, token)
	c.save()
}

func (c *challengeFiles) save() {
	b, err := json.Marshal(c.files)
	if err == nil {
		err = atomicfile.WriteFile(c.path, b, 0o600)
	}
	if err != nil {
		c.log.Warn("cannot save the http-01 challenge record", "err", err)
	}
}
