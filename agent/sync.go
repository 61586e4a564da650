package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/atomicfile"
	"github.com/certops/certops/pki"
)

// action is what an assignment needs on this pass.
type action int

const (
	actNone    action = iota
	actInstall        // install Current with a key the agent holds
	actIssue          // get a new certificate
)

type decision struct {
	act    action
	reason string
	cur    *issuedCert // actInstall: the certificate to install
	key    *hostKey    // actInstall: its key
}

// certName guards the state dir: names become file names there.
var certName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)

// syncOne brings one assignment to its desired state. It returns server
// trouble unreported (the pass stops) and reports every other outcome.
func (a *Agent) syncOne(ctx context.Context, as agentproto.Assignment) error {
	if !certName.MatchString(as.Name) {
		return fmt.Errorf("invalid certificate name %q", as.Name)
	}
	if as.Suspended {
		a.log.Debug("suspended: nothing is issued, installed or renewed", "certificate", as.Name)
		return nil
	}
	d := a.decide(as)
	if d.act == actNone {
		return nil
	}
	log := a.log.With("certificate", as.Name)
	// The host policy first: nothing is issued for files that cannot be
	// installed, nothing written, no reload run.
	if err := a.checkPolicy(as); err != nil {
		if f := a.failure(as); f != nil && f.Policy && a.now().Before(f.RetryAt) {
			log.Debug("refused by the host policy before; waiting", "retry_at", f.RetryAt, "failures", f.Count)
			return nil
		}
		return a.refuse(ctx, as, err)
	}
	// A refusal by a policy that now allows the assignment holds nothing back.
	if f := a.failure(as); f != nil && !f.Policy && a.now().Before(f.RetryAt) && (d.act == actIssue || d.cur.Serial == f.Serial) {
		log.Debug("deployment failed before; waiting", "retry_at", f.RetryAt, "failures", f.Count)
		return nil
	}
	log.Info("deploying", "reason", d.reason)
	if d.act == actInstall {
		return a.deploy(ctx, as, d.cur, d.key)
	}
	return a.issueAndDeploy(ctx, as)
}

// failure is the assignment's last failed deployment for its current spec.
func (a *Agent) failure(as agentproto.Assignment) *deployFailure {
	st := a.state.get(as.Name)
	if st == nil || st.Failure == nil || st.Failure.SpecHash != as.SpecHash {
		return nil
	}
	return st.Failure
}

// decide applies the rules of the package documentation.
func (a *Agent) decide(as agentproto.Assignment) decision {
	now := a.now()
	st := a.state.get(as.Name)
	var cur *issuedCert
	if as.Current != nil {
		c, err := parseIssued(as.Current)
		if err != nil {
			a.log.Warn("ignoring unusable current certificate", "certificate", as.Name, "err", err)
		} else {
			cur = c
		}
	}
	installed := cur != nil && st != nil && st.SHA256 == cur.sha256 && st.SpecHash == as.SpecHash &&
		filesHold(as.Files, cur)
	if cur != nil && !installed && now.Before(cur.NotAfter) {
		if key := a.heldKey(as.Name, cur); key != nil {
			reason := "current certificate not installed"
			if st != nil && st.SHA256 == cur.sha256 {
				reason = "installed files missing or changed"
			}
			return decision{act: actInstall, reason: reason, cur: cur, key: key}
		}
	}
	renewAt := as.RenewAt
	if renewAt.IsZero() && cur != nil { // not sent: renew at 2/3 of the lifetime
		renewAt = cur.NotBefore.Add(cur.NotAfter.Sub(cur.NotBefore) * 2 / 3)
	}
	if installed && now.Before(renewAt) {
		return decision{}
	}
	if now.Before(as.NotBefore) {
		a.log.Debug("certificate needed, but the server asks to wait", "certificate", as.Name, "not_before", as.NotBefore)
		return decision{}
	}
	var reason string
	switch {
	case st != nil && st.SpecHash != "" && st.SpecHash != as.SpecHash:
		reason = "spec changed"
	case cur == nil:
		reason = "no certificate yet"
	case !installed:
		reason = "current certificate not installed and its key is not held here"
	default:
		reason = "renewal due"
	}
	return decision{act: actIssue, reason: reason}
}

// filesHold reports whether every file of the set exists and the
// certificate files (PEM and DER) hold cur. The key containers, encrypted
// with fresh salts at each install, are only checked to exist.
func filesHold(f agentproto.Files, cur *issuedCert) bool {
	for _, p := range []string{f.Cert, f.Fullchain, f.Combined} {
		if p != "" && fingerprintOfFile(p) != cur.sha256 {
			return false
		}
	}
	if f.DER != "" && !derHolds(f.DER, cur) {
		return false
	}
	for _, p := range []string{f.Chain, f.Key, f.PKCS12, f.JKS} {
		if p == "" {
			continue
		}
		if _, err := os.Lstat(p); err != nil {
			return false
		}
	}
	return true
}

// heldKey is the key (installed or pending) whose public key is cur's.
func (a *Agent) heldKey(name string, cur *issuedCert) *hostKey {
	for _, p := range []string{a.state.keyPath(name), a.state.pendingKeyPath(name)} {
		k, err := loadKey(p)
		if err != nil {
			a.log.Warn("unreadable key in the state dir", "certificate", name, "err", err)
			continue
		}
		if k != nil && pki.SamePublicKey(cur.leaf.PublicKey, k.signer.Public()) {
			return k
		}
	}
	return nil
}

// issueAndDeploy gets a certificate for a key held here and deploys it.
func (a *Agent) issueAndDeploy(ctx context.Context, as agentproto.Assignment) error {
	key, err := a.keyForIssue(as)
	if err != nil {
		return a.fail(ctx, as, "", agentproto.StageIssue, fmt.Errorf("private key: %w", err))
	}
	csr, err := pki.NewCSR(key.signer, as)
	if err != nil {
		return a.fail(ctx, as, "", agentproto.StageIssue, err)
	}
	iss, err := a.client.issue(ctx, as.Name, agentproto.IssueRequest{SpecHash: as.SpecHash, CSRPEM: string(csr)})
	switch code := codeOf(err); {
	case errors.Is(err, errIssuePending):
		// The key stays pending; Current appears when the order completes.
		a.log.Info("the server is ordering the certificate; polling for it", "certificate", as.Name)
		a.fastPoll = true
		return nil
	case err == nil:
	case code == agentproto.CodeBackoff || code == agentproto.CodeIssuerUnavailable || code == agentproto.CodeUnavailable:
		// On the issue route these are about this certificate (its
		// backoff, its issuer, or the server failing to record it): wait
		// as told, keep serving the others.
		a.recordFailure(as, "", a.now().Add(retryAfterOf(err)))
		a.report(ctx, agentproto.Report{Certificate: as.Name, SpecHash: as.SpecHash, Result: agentproto.ResultFailed, Stage: agentproto.StageIssue, Error: err.Error()})
		// %v, not %w: this is not server trouble, the pass goes on.
		return fmt.Errorf("%s: %v", agentproto.StageIssue, err)
	case isServerTrouble(err):
		return err
	case code == agentproto.CodeWaiting:
		// No failure: the server holds the order back (the CA's rate
		// limit). The assignments say until when.
		a.etag = ""
		a.log.Info("the server holds the certificate back; waiting", "certificate", as.Name, "reason", err)
		return nil
	case code == agentproto.CodeConflict || code == agentproto.CodeSuspended:
		a.etag = "" // our spec is outdated: fetch the assignments again
		a.log.Info("server says the spec changed; polling again", "certificate", as.Name, "code", code)
		return nil
	default:
		return a.fail(ctx, as, "", agentproto.StageIssue, err)
	}
	cert, err := parseIssued(iss)
	if err == nil && !pki.SamePublicKey(cert.leaf.PublicKey, key.signer.Public()) {
		err = fmt.Errorf("issued certificate %s is not for the key of our CSR", iss.Serial)
	}
	if err != nil {
		return a.fail(ctx, as, iss.Serial, agentproto.StageIssue, err)
	}
	return a.deploy(ctx, as, cert, key)
}

// keyForIssue picks the key of the next certificate: with rotationPolicy
// Never the installed key while its type matches and spec.reissue has not
// changed since it was installed; otherwise a pending key of the right
// type (generated earlier, never deployed), or a new one.
func (a *Agent) keyForIssue(as agentproto.Assignment) (*hostKey, error) {
	if st := a.state.get(as.Name); strings.EqualFold(as.Key.RotationPolicy, "Never") && (st == nil || st.Reissue == as.Reissue) {
		k, err := loadKey(a.state.keyPath(as.Name))
		if err != nil {
			a.log.Warn("unreadable installed key; generating a new one", "certificate", as.Name, "err", err)
		}
		if k != nil && pki.KeyMatches(k.signer.Public(), as.Key) {
			return k, nil
		}
	}
	k, err := loadKey(a.state.pendingKeyPath(as.Name))
	if err != nil {
		a.log.Warn("unreadable pending key; generating a new one", "certificate", as.Name, "err", err)
	}
	if k != nil && pki.KeyMatches(k.signer.Public(), as.Key) {
		return k, nil
	}
	return newKey(as.Key, a.state.pendingKeyPath(as.Name))
}

// deploy installs cert with key, reloads, verifies and commits, or rolls
// back. Once the files start moving it runs to the end even if ctx is
// cancelled (every step is bounded by its own timeout), so a shutdown does
// not leave a half-done deployment behind.
func (a *Agent) deploy(ctx context.Context, as agentproto.Assignment, cert *issuedCert, key *hostKey) error {
	ctx = context.WithoutCancel(ctx)
	files, err := a.fileSet(as, cert, key)
	if err != nil {
		return a.fail(ctx, as, cert.Serial, agentproto.StageInstall, err)
	}
	j, err := a.swap(as.Name, files, as.Reload, as.Files.Layout)
	if errors.Is(err, errCrash) {
		return err
	}
	if err != nil {
		return a.fail(ctx, as, cert.Serial, agentproto.StageInstall, err)
	}
	if err := a.setPhase(j, phaseReload); err != nil {
		return a.rollback(ctx, as, cert, j, agentproto.StageInstall, err)
	}
	if err := a.reload(ctx, as.Reload); err != nil {
		return a.rollback(ctx, as, cert, j, agentproto.StageReload, err)
	}
	if as.Verify != nil {
		if err := a.verify(ctx, as, cert.sha256); err != nil {
			return a.rollback(ctx, as, cert, j, agentproto.StageVerify, err)
		}
	}
	if err := a.commit(as, cert, key, j); err != nil {
		return err // only a crash: the journal is committed, recovery finishes
	}
	a.report(ctx, agentproto.Report{Certificate: as.Name, SpecHash: as.SpecHash, Serial: cert.Serial, Result: agentproto.ResultInstalled})
	return nil
}

// commit makes a deployment final: the journal says committed, the key
// becomes the installed key, the state records the certificate, then the
// backups and the journal go.
func (a *Agent) commit(as agentproto.Assignment, cert *issuedCert, key *hostKey, j *journal) error {
	if err := a.setPhase(j, phaseCommit); err != nil {
		return err
	}
	keyPath := a.state.keyPath(as.Name)
	if key.path != keyPath {
		if err := a.mutate(); err != nil {
			return err
		}
		if err := os.Rename(key.path, keyPath); err != nil {
			a.log.Error("keep the new key", "certificate", as.Name, "err", err)
		} else if err := atomicfile.SyncDir(a.state.dir + "/keys"); err != nil {
			a.log.Warn("fsync keys dir", "err", err)
		}
	}
	if err := a.mutate(); err != nil {
		return err
	}
	err := a.state.update(as.Name, func(s *certState) {
		*s = certState{Serial: cert.Serial, SHA256: cert.sha256, SpecHash: as.SpecHash, KeyFile: keyPath, Reissue: as.Reissue, InstalledAt: a.now().UTC(),
			NotAfter: cert.NotAfter.UTC()}
	})
	if err != nil {
		a.log.Error("save state", "err", err)
	}
	return a.finishCommitted(j)
}

// fail records a failed deployment (nothing changed), reports it and
// returns it.
func (a *Agent) fail(ctx context.Context, as agentproto.Assignment, serial, stage string, cause error) error {
	a.recordFailure(as, serial, time.Time{})
	a.report(ctx, agentproto.Report{
		Certificate: as.Name, SpecHash: as.SpecHash, Serial: serial,
		Result: agentproto.ResultFailed, Stage: stage, Error: cause.Error(),
	})
	return fmt.Errorf("%s: %w", stage, cause)
}

// refuse records and reports an assignment the host policy refuses:
// failed at stage policy, nothing issued, written or run.
func (a *Agent) refuse(ctx context.Context, as agentproto.Assignment, cause error) error {
	a.recordFailure(as, "", time.Time{})
	if err := a.state.update(as.Name, func(s *certState) { s.Failure.Policy = true }); err != nil {
		a.log.Error("save state", "err", err)
	}
	a.report(ctx, agentproto.Report{
		Certificate: as.Name, SpecHash: as.SpecHash,
		Result: agentproto.ResultFailed, Stage: agentproto.StagePolicy, Error: cause.Error(),
	})
	return fmt.Errorf("%s: %w", agentproto.StagePolicy, cause)
}

// rollback restores the previous files after a failed reload or verify,
// reloads again and reports rolled-back.
func (a *Agent) rollback(ctx context.Context, as agentproto.Assignment, cert *issuedCert, j *journal, stage string, cause error) error {
	if errors.Is(cause, errCrash) {
		return cause
	}
	if err := a.rollbackFiles(j); err != nil {
		if errors.Is(err, errCrash) {
			return err
		}
		// The journal stays: the next start (or install) retries the rollback.
		err = fmt.Errorf("%w; restoring the previous files failed too: %v", cause, err)
		return a.fail(ctx, as, cert.Serial, stage, err)
	}
	msg := cause.Error()
	if err := a.reload(ctx, as.Reload); err != nil {
		msg += "; reload after restoring the previous files failed too: " + err.Error()
	}
	if err := a.removeJournal(); err != nil {
		return err
	}
	a.recordFailure(as, cert.Serial, time.Time{})
	a.report(ctx, agentproto.Report{
		Certificate: as.Name, SpecHash: as.SpecHash, Serial: cert.Serial,
		Result: agentproto.ResultRolledBack, Stage: stage, Error: msg,
	})
	return fmt.Errorf("%s failed, previous files restored: %w", stage, cause)
}

// recordFailure schedules the next attempt: PollInterval doubling per
// consecutive failure of the same spec, capped at an hour, and not before
// notBefore.
func (a *Agent) recordFailure(as agentproto.Assignment, serial string, notBefore time.Time) {
	err := a.state.update(as.Name, func(s *certState) {
		n := 1
		if f := s.Failure; f != nil && f.SpecHash == as.SpecHash {
			n = f.Count + 1
		}
		d := a.cfg.PollInterval
		for i := 1; i < n && d < maxDeployRetry; i++ {
			d *= 2
		}
		retryAt := a.now().Add(min(d, maxDeployRetry))
		if notBefore.After(retryAt) {
			retryAt = notBefore
		}
		s.Failure = &deployFailure{SpecHash: as.SpecHash, Serial: serial, Count: n, RetryAt: retryAt.UTC()}
	})
	if err != nil {
		a.log.Error("save state", "err", err)
	}
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
