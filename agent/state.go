package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/certops/certops/atomicfile"
)

// state is StateDir/state.json: what the agent installed.
type state struct {
	Certificates map[string]*certState `json:"certificates"`
}

// certState is one certificate's installed version.
type certState struct {
	Serial   string `json:"serial,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
	SpecHash string `json:"specHash,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// Reissue is the spec.reissue the installed certificate was issued
	// under: with rotationPolicy Never its key is reused only while the
	// assignment's is the same.
	Reissue     string    `json:"reissue,omitempty"`
	InstalledAt time.Time `json:"installedAt,omitzero"`
	// Failure is the last failed deployment, retried at RetryAt unless the
	// spec or Current changes first.
	Failure *deployFailure `json:"failure,omitempty"`
}

type deployFailure struct {
	SpecHash string    `json:"specHash"`
	Serial   string    `json:"serial,omitempty"` // the certificate that failed to deploy; empty: issue failed
	Count    int       `json:"count"`
	RetryAt  time.Time `json:"retryAt"`
	// Policy: the host policy refused it. The backoff holds only while the
	// policy still refuses: an agent restarted with a policy that allows
	// the assignment deploys it at once.
	Policy bool `json:"policy,omitempty"`
}

// stateStore is the state dir.
type stateStore struct {
	dir string
	st  state
}

func openState(dir string) (*stateStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "keys")} {
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("state dir: %w", err)
		}
	}
	s := &stateStore{dir: dir, st: state{Certificates: map[string]*certState{}}}
	b, err := os.ReadFile(s.path())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := json.Unmarshal(b, &s.st); err != nil {
		return nil, fmt.Errorf("state %s is corrupt (move it away to start over): %w", s.path(), err)
	}
	if s.st.Certificates == nil {
		s.st.Certificates = map[string]*certState{}
	}
	return s, nil
}

func (s *stateStore) path() string        { return filepath.Join(s.dir, "state.json") }
func (s *stateStore) journalPath() string { return filepath.Join(s.dir, "journal.json") }

// keyPath is the key of name's installed certificate; pendingKeyPath a key
// generated for a certificate not yet installed.
func (s *stateStore) keyPath(name string) string {
	return filepath.Join(s.dir, "keys", name+".key")
}

func (s *stateStore) pendingKeyPath(name string) string {
	return filepath.Join(s.dir, "keys", name+".pending.key")
}

// get returns name's state, nil when nothing was ever installed.
func (s *stateStore) get(name string) *certState { return s.st.Certificates[name] }

// update changes name's state and saves it.
func (s *stateStore) update(name string, f func(*certState)) error {
	cs := s.st.Certificates[name]
	if cs == nil {
		cs = &certState{}
		s.st.Certificates[name] = cs
	}
	f(cs)
	b, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path(), b, 0o600)
}
