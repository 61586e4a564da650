package gitsource

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"

	"github.com/certops/certops/secret"
)

// Auth holds references to credentials; the secrets themselves live in files
// (for example a mounted Kubernetes Secret) and are read when the Repo opens.
//
//   - HTTPS basic: Username and PasswordFile.
//   - HTTPS token: TokenFile, sent as basic auth with Username, or
//     "x-access-token" when Username is empty (GitHub, Gitea; GitLab accepts
//     any user name with a token).
//   - SSH: SSHKeyFile (an unencrypted private key) and KnownHostsFile, both
//     required; the server's host key must be listed in KnownHostsFile. The
//     user is Username, else the one in the URL, else "git".
type Auth struct {
	Username       string
	PasswordFile   string
	TokenFile      string
	SSHKeyFile     string
	KnownHostsFile string
}

// method builds the go-git auth method for the endpoint, refusing
// combinations that do not fit its protocol.
func (a Auth) method(ep *transport.Endpoint) (transport.AuthMethod, error) {
	httpAuth := a.PasswordFile != "" || a.TokenFile != ""
	sshAuth := a.SSHKeyFile != "" || a.KnownHostsFile != ""
	switch ep.Protocol {
	case "http", "https":
		if sshAuth {
			return nil, errors.New("SSH key and known_hosts files are only used with ssh URLs")
		}
		return a.httpMethod()
	case "ssh":
		if httpAuth {
			return nil, errors.New("password and token files are only used with http(s) URLs")
		}
		return a.sshMethod(ep)
	default: // file and local paths
		if httpAuth || sshAuth {
			return nil, fmt.Errorf("credentials are not used with %s repositories", ep.Protocol)
		}
		return nil, nil
	}
}

func (a Auth) httpMethod() (transport.AuthMethod, error) {
	switch {
	case a.PasswordFile != "" && a.TokenFile != "":
		return nil, errors.New("set either a password file or a token file, not both")
	case a.PasswordFile != "":
		if a.Username == "" {
			return nil, errors.New("a password file needs a username")
		}
		password, err := secret.ReadFile(a.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password: %w", err)
		}
		return &githttp.BasicAuth{Username: a.Username, Password: password}, nil
	case a.TokenFile != "":
		token, err := secret.ReadFile(a.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		user := a.Username
		if user == "" {
			user = "x-access-token"
		}
		return &githttp.BasicAuth{Username: user, Password: token}, nil
	default:
		return nil, nil // anonymous
	}
}

func (a Auth) sshMethod(ep *transport.Endpoint) (transport.AuthMethod, error) {
	if a.SSHKeyFile == "" {
		return nil, errors.New("ssh URLs need an SSH key file")
	}
	if a.KnownHostsFile == "" {
		return nil, errors.New("ssh URLs need a known_hosts file; host keys are never accepted unverified")
	}
	user := a.Username
	if user == "" {
		user = ep.User
	}
	if user == "" {
		user = "git"
	}
	pemBytes, err := os.ReadFile(a.SSHKeyFile)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %w", a.SSHKeyFile, err)
	}
	if _, err := os.Stat(a.KnownHostsFile); err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	db, err := gitssh.NewKnownHostsDb(a.KnownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", a.KnownHostsFile, err)
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	hostPort := net.JoinHostPort(ep.Host, strconv.Itoa(port))
	return &gitssh.PublicKeys{
		User:   user,
		Signer: signer,
		HostKeyCallbackHelper: gitssh.HostKeyCallbackHelper{
			HostKeyCallback:   db.HostKeyCallback(),
			HostKeyAlgorithms: db.HostKeyAlgorithms(hostPort),
		},
	}, nil
}
