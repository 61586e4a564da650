package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/certops/certops/atomicfile"
	"github.com/certops/certops/textlimit"
)

// state is StateDir/state.json: what the agent installed, and its last
// pass and delivered report (what `certops-agent status` shows).
type state struct {
	Certificates map[string]*certState `json:"certificates"`
	// Bundles are the trust bundles installed, by name.
	Bundles    map[string]*bundleState `json:"bundles,omitempty"`
	LastSync   *SyncRecord             `json:"lastSync,omitempty"`
	LastReport *ReportRecord           `json:"lastReport,omitempty"`
}

// SyncRecord is the end of a pass: when, and its error ("" when it
// succeeded).
type SyncRecord struct {
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

// ReportRecord is the last report the server took.
type ReportRecord struct {
	At          time.Time `json:"at"`
	Certificate string    `json:"certificate"`
	Bundle      string    `json:"bundle,omitempty"` // a trust bundle's report (Certificate empty)
	Result      string    `json:"result"`
	Stage       string    `json:"stage,omitempty"`
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
	NotAfter    time.Time `json:"notAfter,omitzero"` // of the installed certificate
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
	return s.save()
}

func (s *stateStore) save() error {
	b, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path(), b, 0o600)
}

// recordSync saves the end of a pass (with the last report delivered in
// it), for `certops-agent status`.
func (s *stateStore) recordSync(at time.Time, err error, log *slog.Logger) {
	rec := &SyncRecord{At: at.UTC()}
	if err != nil {
		rec.Error = textlimit.Bound(err.Error(), 1024)
	}
	s.st.LastSync = rec
	if err := s.save(); err != nil {
		log.Error("save state", "err", err)
	}
}

// Status is what a state directory says about its agent: each
// certificate it installed or tried to, its last pass and the last report
// the server took, an install interrupted by a crash, keys generated for
// certificates not installed yet. ReadStatus reads it without changing
// anything; `certops-agent status` prints it.
type Status struct {
	StateDir           string                 `json:"stateDir"`
	Certificates       []InstalledCertificate `json:"certificates"`
	Bundles            []InstalledBundle      `json:"bundles,omitempty"`
	LastSync           *SyncRecord            `json:"lastSync,omitempty"`
	LastReport         *ReportRecord          `json:"lastReport,omitempty"`
	InterruptedInstall bool                   `json:"interruptedInstall,omitempty"`
	PendingKeys        []string               `json:"pendingKeys,omitempty"`
}

// InstalledCertificate is one certificate in the state directory: the
// installed one (Serial empty when none is), and its last failed
// deployment, if any.
type InstalledCertificate struct {
	Name        string    `json:"name"`
	Serial      string    `json:"serial,omitempty"`
	NotAfter    time.Time `json:"notAfter,omitzero"`
	InstalledAt time.Time `json:"installedAt,omitzero"`
	SpecHash    string    `json:"specHash,omitempty"`
	// Failures counts the failed deployments in a row (0: none); the next
	// attempt is at RetryAt. PolicyRefused: the host policy refused it.
	Failures      int       `json:"failures,omitempty"`
	RetryAt       time.Time `json:"retryAt,omitzero"`
	PolicyRefused bool      `json:"policyRefused,omitempty"`
}

// InstalledBundle is one trust bundle in the state directory: what was
// last installed (SHA256 empty when nothing was), and its last failure.
type InstalledBundle struct {
	Name        string    `json:"name"`
	Path        string    `json:"path,omitempty"`
	SHA256      string    `json:"sha256,omitempty"`
	InstalledAt time.Time `json:"installedAt,omitzero"`
	Failures    int       `json:"failures,omitempty"`
	RetryAt     time.Time `json:"retryAt,omitzero"`
}

// ReadStatus reads the state directory dir of an agent (running or not).
// A directory without state.json is an agent that installed nothing yet.
func ReadStatus(dir string) (Status, error) {
	st := Status{StateDir: dir, Certificates: []InstalledCertificate{}}
	if _, err := os.Stat(dir); err != nil {
		return st, fmt.Errorf("state dir: %w", err)
	}
	var raw state
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return st, fmt.Errorf("state: %w", err)
	default:
		if err := json.Unmarshal(b, &raw); err != nil {
			return st, fmt.Errorf("state %s is corrupt: %w", filepath.Join(dir, "state.json"), err)
		}
	}
	for name, cs := range raw.Certificates {
		c := InstalledCertificate{Name: name, Serial: cs.Serial, NotAfter: cs.NotAfter, InstalledAt: cs.InstalledAt, SpecHash: cs.SpecHash}
		if f := cs.Failure; f != nil {
			c.Failures, c.RetryAt, c.PolicyRefused = f.Count, f.RetryAt, f.Policy
		}
		st.Certificates = append(st.Certificates, c)
	}
	slices.SortFunc(st.Certificates, func(a, b InstalledCertificate) int { return strings.Compare(a.Name, b.Name) })
	for name, bs := range raw.Bundles {
		b := InstalledBundle{Name: name, Path: bs.Path, SHA256: bs.SHA256, InstalledAt: bs.InstalledAt}
		if f := bs.Failure; f != nil {
			b.Failures, b.RetryAt = f.Count, f.RetryAt
		}
		st.Bundles = append(st.Bundles, b)
	}
	slices.SortFunc(st.Bundles, func(a, b InstalledBundle) int { return strings.Compare(a.Name, b.Name) })
	st.LastSync, st.LastReport = raw.LastSync, raw.LastReport
	if _, err := os.Stat(filepath.Join(dir, "journal.json")); err == nil {
		st.InterruptedInstall = true
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "keys", "*.pending.key"))
	for _, k := range keys {
		st.PendingKeys = append(st.PendingKeys, strings.TrimSuffix(filepath.Base(k), ".pending.key"))
	}
	return st, nil
}
