package gitsource_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certops/certops/gitsource"
)

// sshServer is a minimal git-over-SSH server on 127.0.0.1: it authenticates
// one client key and runs git-upload-pack for "git-upload-pack '<path>'".
type sshServer struct {
	addr  string
	execs atomic.Int64
}

func startSSHServer(t *testing.T, hostKey ssh.Signer, clientKey ssh.PublicKey) *sshServer {
	t.Helper()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), clientKey.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown client key")
		},
	}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				s.serveConn(t, conn, cfg)
			}()
		}
	}()
	return s
}

func (s *sshServer) serveConn(t *testing.T, conn net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return // handshake refused, e.g. by the client's host key check
	}
	go ssh.DiscardRequests(reqs)
	for newCh := range chans {
		if newCh.ChannelType() != "session" {
			newCh.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := newCh.Accept()
		if err != nil {
			return
		}
		s.serveSession(t, ch, chReqs)
	}
}

func (s *sshServer) serveSession(t *testing.T, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(req.Type == "env", nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			req.Reply(false, nil)
			return
		}
		prog, arg, _ := strings.Cut(payload.Command, " ")
		if prog != "git-upload-pack" {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		s.execs.Add(1)
		status := runUploadPack(ch, strings.Trim(arg, "'"))
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

func runUploadPack(ch ssh.Channel, repoPath string) uint32 {
	cmd := exec.Command("git-upload-pack", repoPath)
	cmd.Env = gitEnv()
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		return 1
	}
	go func() { io.Copy(stdin, ch); stdin.Close() }()
	if err := cmd.Wait(); err != nil {
		return 1
	}
	return 0
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newSigner(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, priv
}

func TestSSH(t *testing.T) {
	u := newUpstream(t)
	u.write(map[string]string{"conf/a.yaml": "a"})
	want := u.commit("one")

	hostKey, _ := newSigner(t)
	clientSigner, clientPriv := newSigner(t)
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, "id_ed25519", pem.EncodeToMemory(block))
	srv := startSSHServer(t, hostKey, clientSigner.PublicKey())
	url := fmt.Sprintf("ssh://git@%s%s", srv.addr, u.dir)
	knownHosts := writeFile(t, "known_hosts",
		[]byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, hostKey.PublicKey())+"\n"))

	t.Run("clone with known host", func(t *testing.T) {
		r := open(t, gitsource.Config{URL: url, Path: "conf", Auth: gitsource.Auth{SSHKeyFile: keyFile, KnownHostsFile: knownHosts}})
		rev, _ := head(t, r)
		if rev.Commit != want {
			t.Errorf("Head = %s, want %s", rev.Commit, want)
		}
	})

	t.Run("wrong host key is refused", func(t *testing.T) {
		otherHost, _ := newSigner(t)
		wrong := writeFile(t, "known_hosts",
			[]byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, otherHost.PublicKey())+"\n"))
		before := srv.execs.Load()
		_, err := gitsource.Open(testContext(t), gitsource.Config{URL: url, Auth: gitsource.Auth{SSHKeyFile: keyFile, KnownHostsFile: wrong}}, nil)
		var keyErr *knownhosts.KeyError
		if !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
			t.Errorf("Open with a mismatching known_hosts: err = %v, want a host key mismatch", err)
		}
		if srv.execs.Load() != before {
			t.Error("the server ran git-upload-pack for a client that should have refused it")
		}
	})

	t.Run("unknown host is refused", func(t *testing.T) {
		empty := writeFile(t, "known_hosts", []byte("# nothing\n"))
		_, err := gitsource.Open(testContext(t), gitsource.Config{URL: url, Auth: gitsource.Auth{SSHKeyFile: keyFile, KnownHostsFile: empty}}, nil)
		if err == nil || !strings.Contains(err.Error(), "key is unknown") {
			t.Errorf("Open with a known_hosts lacking the host: err = %v", err)
		}
	})

	t.Run("no known_hosts is refused", func(t *testing.T) {
		_, err := gitsource.Open(testContext(t), gitsource.Config{URL: url, Auth: gitsource.Auth{SSHKeyFile: keyFile}}, nil)
		if err == nil || !strings.Contains(err.Error(), "known_hosts") {
			t.Errorf("Open without known_hosts: err = %v", err)
		}
	})
}

// httpsGit serves bare repositories under root with git http-backend behind
// basic auth, over TLS on 127.0.0.1, counting the two kinds of requests.
type httpsGit struct {
	srv      *httptest.Server
	caFile   string
	lsRemote atomic.Int64 // GET /info/refs?service=git-upload-pack
	fetch    atomic.Int64 // POST /git-upload-pack
}

func startHTTPSGit(t *testing.T, root, user, token string) *httpsGit {
	t.Helper()
	execPath := git(t, "", "--exec-path")
	backend := &cgi.Handler{
		Path:       filepath.Join(execPath, "git-http-backend"),
		Env:        append(gitEnv(), "GIT_PROJECT_ROOT="+root, "GIT_HTTP_EXPORT_ALL=1"),
		InheritEnv: []string{"PATH"},
	}
	h := &httpsGit{}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs"):
			h.lsRemote.Add(1)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			h.fetch.Add(1)
		}
		backend.ServeHTTP(w, r)
	}))
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	h.caFile = writeFile(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw}))
	return h
}

func TestHTTPS(t *testing.T) {
	u := newUpstream(t)
	u.write(map[string]string{"conf/a.yaml": "a"})
	c1 := u.commit("one")
	root := t.TempDir()
	git(t, "", "clone", "-q", "--bare", u.dir, filepath.Join(root, "config.git"))
	const token = "s3cr3t-token"
	srv := startHTTPSGit(t, root, "x-access-token", token)
	url := srv.srv.URL + "/config.git"
	tokenFile := writeFile(t, "token", []byte(token+"\n"))

	r := open(t, gitsource.Config{URL: url, Path: "conf", CABundleFile: srv.caFile, Auth: gitsource.Auth{TokenFile: tokenFile}})
	if rev, _ := head(t, r); rev.Commit != c1 {
		t.Fatalf("Head = %s, want %s", rev.Commit, c1)
	}

	t.Run("unchanged polls only list refs", func(t *testing.T) {
		lists, fetches := srv.lsRemote.Load(), srv.fetch.Load()
		for range 3 {
			if rev, changed := head(t, r); rev.Commit != c1 || changed {
				t.Fatalf("Head = %s changed=%v, want %s false", rev.Commit, changed, c1)
			}
		}
		if got := srv.fetch.Load() - fetches; got != 0 {
			t.Errorf("unchanged polls made %d upload-pack POSTs, want 0", got)
		}
		if got := srv.lsRemote.Load() - lists; got != 3 {
			t.Errorf("unchanged polls made %d ref advertisements, want 3", got)
		}
	})

	t.Run("a push is fetched", func(t *testing.T) {
		u.write(map[string]string{"conf/b.yaml": "b"})
		c2 := u.commit("two")
		git(t, u.dir, "push", "-q", filepath.Join(root, "config.git"), "main")
		fetches := srv.fetch.Load()
		rev, changed := head(t, r)
		if rev.Commit != c2 || !changed {
			t.Fatalf("Head = %s changed=%v, want %s true", rev.Commit, changed, c2)
		}
		if srv.fetch.Load() == fetches {
			t.Error("no upload-pack POST for a changed ref")
		}
		if got, err := r.ChangedFiles(c1, c2); err != nil || len(got) != 1 || got[0] != "b.yaml" {
			t.Errorf("ChangedFiles = %v, %v; want [b.yaml]", got, err)
		}
	})

	t.Run("bad token fails clearly", func(t *testing.T) {
		bad := writeFile(t, "token", []byte("wrong"))
		_, err := gitsource.Open(testContext(t), gitsource.Config{URL: url, CABundleFile: srv.caFile, Auth: gitsource.Auth{TokenFile: bad}}, nil)
		if err == nil || !strings.Contains(err.Error(), "authentication required") || !strings.Contains(err.Error(), url) {
			t.Errorf("Open with a bad token: err = %v, want an authentication error naming the URL", err)
		}
		if err != nil && strings.Contains(err.Error(), "wrong") {
			t.Errorf("error leaks the token: %v", err)
		}
	})

	t.Run("untrusted CA fails", func(t *testing.T) {
		_, err := gitsource.Open(testContext(t), gitsource.Config{URL: url, Auth: gitsource.Auth{TokenFile: tokenFile}}, nil)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("Open without the CA bundle: err = %v, want a certificate error", err)
		}
	})
}
