package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/certops/certops/agentproto"
)

// Trust bundles: the server sends each bundle's PEM; the agent writes it
// to files.bundle whenever that file does not hold exactly the PEM, in the
// same journaled install as certificates (temp file, backup, rename,
// reload, rollback on a failed reload), under the same host policy
// (allowedDirs, allowedReloads, maxFileMode), and reports the outcome with
// Report.Bundle. A bundle no longer assigned is left where it is: the
// agent removes nothing.

// bundleState is an installed bundle, and its last failure.
type bundleState struct {
	SHA256      string         `json:"sha256,omitempty"`
	Path        string         `json:"path,omitempty"`
	InstalledAt time.Time      `json:"installedAt,omitzero"`
	Failure     *deployFailure `json:"failure,omitempty"` // SpecHash holds the bundle's SHA-256
}

// syncBundle brings one bundle's file to the server's PEM. It reports
// every outcome but an unchanged bundle.
func (a *Agent) syncBundle(ctx context.Context, b agentproto.Bundle) error {
	if !certName.MatchString(b.Name) {
		return fmt.Errorf("invalid bundle name %q", b.Name)
	}
	sum := sha256.Sum256([]byte(b.PEM))
	if hex.EncodeToString(sum[:]) != b.SHA256 {
		return fmt.Errorf("the bundle's sha256 %s does not match its PEM", b.SHA256)
	}
	path := b.Files.Bundle
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, []byte(b.PEM)) {
		if st := a.state.st.Bundles[b.Name]; st == nil || st.SHA256 != b.SHA256 || st.Failure != nil {
			a.updateBundle(b.Name, func(s *bundleState) { *s = bundleState{SHA256: b.SHA256, Path: path, InstalledAt: a.now().UTC()} })
		}
		return nil
	}
	log := a.log.With("bundle", b.Name)
	st := a.state.st.Bundles[b.Name]
	if f := st.failureFor(b.SHA256); f != nil && a.now().Before(f.RetryAt) {
		log.Debug("bundle install failed before; waiting", "retry_at", f.RetryAt, "failures", f.Count)
		return nil
	}
	if err := a.checkBundlePolicy(b); err != nil {
		return a.bundleFailed(ctx, b, agentproto.StagePolicy, err)
	}
	log.Info("installing trust bundle", "path", path)
	files, err := a.bundleFile(b)
	if err != nil {
		return a.bundleFailed(ctx, b, agentproto.StageInstall, err)
	}
	ctx = context.WithoutCancel(ctx)
	j, err := a.swap("bundle:"+b.Name, files, b.Reload, layoutFiles)
	if errors.Is(err, errCrash) {
		return err
	}
	if err != nil {
		return a.bundleFailed(ctx, b, agentproto.StageInstall, err)
	}
	stage, cause := agentproto.StageInstall, a.setPhase(j, phaseReload)
	if cause == nil {
		stage, cause = agentproto.StageReload, a.reload(ctx, b.Reload)
	}
	if cause != nil {
		return a.bundleRollback(ctx, b, j, stage, cause)
	}
	if err := a.setPhase(j, phaseCommit); err != nil {
		return err
	}
	a.updateBundle(b.Name, func(s *bundleState) { *s = bundleState{SHA256: b.SHA256, Path: path, InstalledAt: a.now().UTC()} })
	if err := a.finishCommitted(j); err != nil {
		return err
	}
	a.report(ctx, agentproto.Report{Bundle: b.Name, SHA256: b.SHA256, Result: agentproto.ResultInstalled})
	return nil
}

// bundleFile is the bundle as the one file of an install.
func (a *Agent) bundleFile(b agentproto.Bundle) ([]targetFile, error) {
	path := b.Files.Bundle
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return nil, fmt.Errorf("files.bundle %q: want a clean absolute path", path)
	}
	uid, gid, err := a.owner(agentproto.Files{Owner: b.Files.Owner, Group: b.Files.Group})
	if err != nil {
		return nil, err
	}
	mode := os.FileMode(0o644)
	if b.Files.Mode != "" {
		m, err := strconv.ParseUint(b.Files.Mode, 8, 32)
		if err != nil || m > 0o777 {
			return nil, fmt.Errorf("files.mode %q: want octal permissions such as \"0644\"", b.Files.Mode)
		}
		mode = os.FileMode(m)
	}
	return []targetFile{{path: path, data: []byte(b.PEM), mode: a.capMode(mode, false), uid: uid, gid: gid}}, nil
}

// checkBundlePolicy is the host policy's verdict on a bundle: its path
// inside allowedDirs, its reload in allowedReloads.
func (a *Agent) checkBundlePolicy(b agentproto.Bundle) error {
	var errs []error
	if p := b.Files.Bundle; filepath.IsAbs(p) && filepath.Clean(p) == p {
		if err := a.allowed(p); err != nil {
			errs = append(errs, fmt.Errorf("files.bundle: %w", err))
		}
	}
	if err := a.reloadAllowed(b.Reload); err != nil {
		errs = append(errs, err)
	}
	return policyRefusal(errs)
}

// bundleRollback restores the previous file after a failed reload, reloads
// again and reports rolled-back.
func (a *Agent) bundleRollback(ctx context.Context, b agentproto.Bundle, j *journal, stage string, cause error) error {
	if errors.Is(cause, errCrash) {
		return cause
	}
	if err := a.rollbackFiles(j); err != nil {
		if errors.Is(err, errCrash) {
			return err
		}
		return a.bundleFailed(ctx, b, stage, fmt.Errorf("%w; restoring the previous file failed too: %v", cause, err))
	}
	msg := cause.Error()
	if err := a.reload(ctx, b.Reload); err != nil {
		msg += "; reload after restoring the previous file failed too: " + err.Error()
	}
	if err := a.removeJournal(); err != nil {
		return err
	}
	a.recordBundleFailure(b)
	a.report(ctx, agentproto.Report{Bundle: b.Name, SHA256: b.SHA256, Result: agentproto.ResultRolledBack, Stage: stage, Error: msg})
	return fmt.Errorf("%s failed, previous file restored: %w", stage, cause)
}

// bundleFailed records and reports a bundle install that changed nothing.
func (a *Agent) bundleFailed(ctx context.Context, b agentproto.Bundle, stage string, cause error) error {
	a.recordBundleFailure(b)
	a.report(ctx, agentproto.Report{Bundle: b.Name, SHA256: b.SHA256, Result: agentproto.ResultFailed, Stage: stage, Error: cause.Error()})
	return fmt.Errorf("%s: %w", stage, cause)
}

// recordBundleFailure schedules the next attempt of the same content as
// recordFailure does for certificates.
func (a *Agent) recordBundleFailure(b agentproto.Bundle) {
	a.updateBundle(b.Name, func(s *bundleState) {
		n := 1
		if f := s.Failure; f != nil && f.SpecHash == b.SHA256 {
			n = f.Count + 1
		}
		d := a.cfg.PollInterval
		for i := 1; i < n && d < maxDeployRetry; i++ {
			d *= 2
		}
		s.Failure = &deployFailure{SpecHash: b.SHA256, Count: n, RetryAt: a.now().Add(min(d, maxDeployRetry)).UTC()}
	})
}

// failureFor is the last failure of the same content, or nil.
func (s *bundleState) failureFor(sha string) *deployFailure {
	if s == nil || s.Failure == nil || s.Failure.SpecHash != sha {
		return nil
	}
	return s.Failure
}

func (a *Agent) updateBundle(name string, f func(*bundleState)) {
	st := &a.state.st
	if st.Bundles == nil {
		st.Bundles = map[string]*bundleState{}
	}
	bs := st.Bundles[name]
	if bs == nil {
		bs = &bundleState{}
		st.Bundles[name] = bs
	}
	f(bs)
	if err := a.state.save(); err != nil {
		a.log.Error("save state", "err", err)
	}
}
