package agent

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/atomicfile"
)

// targetFile is one file of a certificate's set: a regular file with data,
// or (link set) a symbolic link to link.
type targetFile struct {
	path     string
	data     []byte
	link     string
	mode     os.FileMode
	uid, gid int // -1: leave as created
}

// fileSet renders the files of as.Files: cert (leaf), chain, fullchain
// (leaf + chain), key, combined (leaf + chain + key), der (leaf), pkcs12
// and jks (key containers, with the password files read now), each with
// its mode and owner. The key and the key containers are capped at 0600.
func (a *Agent) fileSet(as agentproto.Assignment, cert *issuedCert, key *hostKey) ([]targetFile, error) {
	f := as.Files
	uid, gid, err := a.owner(f)
	if err != nil {
		return nil, err
	}
	var mode os.FileMode
	if f.Mode != "" {
		m, err := strconv.ParseUint(f.Mode, 8, 32)
		if err != nil || m > 0o777 {
			return nil, fmt.Errorf("files.mode %q: want octal permissions such as \"0640\"", f.Mode)
		}
		mode = os.FileMode(m)
	}
	withNL := func(s string) string {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		return s
	}
	var out []targetFile
	seen := map[string]bool{}
	add := func(field, path string, data func() ([]byte, error), def os.FileMode) error {
		if path == "" {
			return nil
		}
		if !filepath.IsAbs(path) || filepath.Clean(path) != path {
			return fmt.Errorf("files.%s %q: want a clean absolute path", field, path)
		}
		if err := a.allowed(path); err != nil {
			return fmt.Errorf("files.%s: %w", field, err)
		}
		if seen[path] {
			return fmt.Errorf("files.%s %q: the same path is used twice", field, path)
		}
		seen[path] = true
		m := mode
		if m == 0 {
			m = def
		}
		m = a.capMode(m, holdsKey(field))
		b, err := data()
		if err != nil {
			return err
		}
		out = append(out, targetFile{path: path, data: b, mode: m, uid: uid, gid: gid})
		return nil
	}
	text := func(s string) func() ([]byte, error) {
		return func() ([]byte, error) { return []byte(s), nil }
	}
	err = errors.Join(
		add("cert", f.Cert, text(withNL(cert.CertPEM)), 0o644),
		add("chain", f.Chain, text(withNL(cert.ChainPEM)), 0o644),
		add("fullchain", f.Fullchain, text(withNL(cert.CertPEM)+withNL(cert.ChainPEM)), 0o644),
		add("key", f.Key, text(string(key.pem)), 0o600),
		add("combined", f.Combined, text(combinedPEM(withNL(cert.CertPEM), withNL(cert.ChainPEM), key)), 0o600),
		add("der", f.DER, text(string(cert.leaf.Raw)), 0o644),
		add("pkcs12", f.PKCS12, func() ([]byte, error) { return pkcs12File(cert, key, f.PKCS12PasswordFile, f.PKCS12FriendlyName) }, 0o600),
		add("jks", f.JKS, func() ([]byte, error) { return jksFile(cert, key, jksAlias(as), f.JKSPasswordFile) }, 0o600),
	)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no files to install: files.cert, chain, fullchain, key, combined, der, pkcs12 and jks are all empty")
	}
	return out, nil
}

// holdsKey reports whether the file of field holds the private key: the
// key itself and the key containers, capped at mode 0600.
func holdsKey(field string) bool {
	switch field {
	case "key", "combined", "pkcs12", "jks":
		return true
	}
	return false
}

// owner resolves files.owner and files.group (names or numeric ids); -1
// when unset. A non-root agent cannot give files to another user.
func (a *Agent) owner(f agentproto.Files) (uid, gid int, err error) {
	uid, gid = -1, -1
	if f.Owner != "" {
		u, err := lookupUser(f.Owner)
		if err != nil {
			return 0, 0, fmt.Errorf("files.owner: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		if euid := a.geteuid(); euid != 0 && uid != euid {
			return 0, 0, fmt.Errorf("files.owner %q (uid %d): the agent runs as uid %d, not root, so it cannot give files to another user; run it as root or drop files.owner", f.Owner, uid, euid)
		}
	}
	if f.Group != "" {
		g, err := lookupGroup(f.Group)
		if err != nil {
			return 0, 0, fmt.Errorf("files.group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}

func lookupUser(s string) (*user.User, error) {
	if _, err := strconv.Atoi(s); err == nil {
		return user.LookupId(s)
	}
	return user.Lookup(s)
}

func lookupGroup(s string) (*user.Group, error) {
	if _, err := strconv.Atoi(s); err == nil {
		return user.LookupGroupId(s)
	}
	return user.LookupGroup(s)
}

// Install layouts (agentproto.Files.Layout).
const (
	layoutFiles   = "files"   // each path a regular file, each replaced by a rename
	layoutSymlink = "symlink" // each path a link into a version directory, flipped by one rename
)

// Under the symlink layout the files of certificate NAME in directory D are
// D/.certops.NAME/v-RANDOM/BASE, one version directory per install;
// D/.certops.NAME/current links to the installed version, and every path
// D/BASE links to .certops.NAME/current/BASE. An install writes a new
// version directory, then swaps the current link (and, the first time, the
// paths' links) through the journal like any file: one rename flips the
// whole set.
const (
	versionsPrefix = ".certops."
	currentLink    = "current"
	versionPrefix  = "v-"
)

// symlinkLayout turns the rendered files into a version directory, written
// now, and the links to swap: the current link first, then each path whose
// link is not in place yet. It returns the versions directory too.
func (a *Agent) symlinkLayout(name string, files []targetFile) ([]targetFile, string, error) {
	dir := filepath.Dir(files[0].path)
	for _, f := range files[1:] {
		if filepath.Dir(f.path) != dir {
			return nil, "", fmt.Errorf("files.layout symlink: every file must be in one directory, but %s and %s are not", files[0].path, f.path)
		}
	}
	versions := filepath.Join(dir, versionsPrefix+name)
	if err := mkdirAll(versions); err != nil {
		return nil, "", err
	}
	version := versionPrefix + randomSuffix()
	if err := a.mutate(); err != nil {
		return nil, "", err
	}
	if err := os.Mkdir(filepath.Join(versions, version), 0o755); err != nil {
		return nil, "", err
	}
	if err := os.Chmod(filepath.Join(versions, version), 0o755); err != nil {
		return nil, "", err
	}
	out := []targetFile{{path: filepath.Join(versions, currentLink), link: version}}
	for _, f := range files {
		base := filepath.Base(f.path)
		vf := f
		vf.path = filepath.Join(versions, version, base)
		if err := a.writeTemp(vf, vf.path); err != nil {
			return nil, "", err
		}
		link := filepath.Join(versionsPrefix+name, currentLink, base)
		if got, err := os.Readlink(f.path); err != nil || got != link {
			out = append(out, targetFile{path: f.path, link: link})
		}
	}
	if err := atomicfile.SyncDir(filepath.Join(versions, version)); err != nil {
		return nil, "", err
	}
	return out, versions, atomicfile.SyncDir(versions)
}

// pruneVersions removes the version directories that the current link does
// not name (an install rolled back or replaced, or one a crash cut short).
// It is idempotent cleanup: what it fails to remove the next install does.
func (a *Agent) pruneVersions(versions string) {
	if versions == "" {
		return
	}
	current, _ := os.Readlink(filepath.Join(versions, currentLink))
	ents, err := os.ReadDir(versions)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), versionPrefix) && e.Name() != current {
			if err := os.RemoveAll(filepath.Join(versions, e.Name())); err != nil {
				a.log.Warn("remove an old version directory", "path", filepath.Join(versions, e.Name()), "err", err)
			}
		}
	}
}

// The install journal: see the package documentation.
const (
	phasePrepare = "prepare" // temp files being written; no target touched
	phaseSwap    = "swap"    // targets being replaced
	phaseReload  = "reload"  // all replaced; reload and verify running
	phaseCommit  = "commit"  // deployment final; backups being removed
)

type journal struct {
	Certificate string        `json:"certificate"`
	Phase       string        `json:"phase"`
	Reload      []string      `json:"reload,omitempty"`
	Files       []journalFile `json:"files"`
	// Versions is the versions directory of the symlink layout, pruned
	// once the journal is done.
	Versions string `json:"versions,omitempty"`
}

type journalFile struct {
	Target  string `json:"target"`
	Temp    string `json:"temp"`
	Backup  string `json:"backup"`
	Existed bool   `json:"existed"`
}

// errCrash is returned by the fault-injection hook: the install stops dead,
// as if the process had been killed.
var errCrash = errors.New("injected crash")

// mutate counts one file system mutation of an install for crash
// injection.
func (a *Agent) mutate() error {
	if a.crashAt == 0 {
		return nil
	}
	a.mutations++
	if a.mutations >= a.crashAt {
		return errCrash
	}
	return nil
}

// swap writes the temp files and replaces the targets with them, recorded
// in the journal. On failure it has rolled back and removed the journal.
func (a *Agent) swap(name string, files []targetFile, reload []string, layout string) (*journal, error) {
	if _, err := os.Stat(a.state.journalPath()); err == nil {
		if err := a.recoverJournal(); err != nil {
			return nil, fmt.Errorf("an earlier install is still unfinished: %w", err)
		}
	}
	j := &journal{Certificate: name, Phase: phasePrepare, Reload: reload}
	if layout == layoutSymlink {
		var err error
		if files, j.Versions, err = a.symlinkLayout(name, files); err != nil {
			return nil, err // a version directory no link names yet: pruned later
		}
	}
	for _, f := range files {
		dir, base := filepath.Split(f.path)
		if err := mkdirAll(dir); err != nil {
			return nil, err
		}
		_, err := os.Lstat(f.path)
		suffix := randomSuffix()
		j.Files = append(j.Files, journalFile{
			Target:  f.path,
			Temp:    filepath.Join(dir, "."+base+".certops-"+suffix+".tmp"),
			Backup:  filepath.Join(dir, "."+base+".certops-"+suffix+".bak"),
			Existed: err == nil,
		})
	}
	if err := a.writeJournal(j); err != nil {
		return nil, err
	}
	undo := func(cause error) (*journal, error) {
		if errors.Is(cause, errCrash) {
			return nil, cause
		}
		if err := a.rollbackFiles(j); err != nil {
			return nil, fmt.Errorf("%w; undoing it failed too: %v", cause, err)
		}
		if err := a.removeJournal(); err != nil {
			return nil, err
		}
		return nil, cause
	}
	for i, f := range files {
		if err := a.writeTemp(f, j.Files[i].Temp); err != nil {
			return undo(err)
		}
	}
	if err := a.setPhase(j, phaseSwap); err != nil {
		return undo(err)
	}
	for _, jf := range j.Files {
		if jf.Existed {
			if err := a.backup(jf); err != nil {
				return undo(err)
			}
		}
		if err := a.mutate(); err != nil {
			return undo(err)
		}
		if err := os.Rename(jf.Temp, jf.Target); err != nil {
			return undo(fmt.Errorf("install %s: %w", jf.Target, err))
		}
	}
	if err := syncDirs(j); err != nil {
		return undo(err)
	}
	return j, nil
}

// backup keeps the old target under its backup name: a hard link, so the
// target never disappears; a rename where links are not supported.
func (a *Agent) backup(jf journalFile) error {
	if err := a.mutate(); err != nil {
		return err
	}
	if err := os.Link(jf.Target, jf.Backup); err == nil {
		return nil
	}
	if err := os.Rename(jf.Target, jf.Backup); err != nil {
		return fmt.Errorf("back up %s: %w", jf.Target, err)
	}
	return nil
}

// writeTemp writes one temp file completely: data, owner, mode, fsync.
func (a *Agent) writeTemp(f targetFile, tmp string) error {
	if err := a.mutate(); err != nil {
		return err
	}
	if f.link != "" {
		if err := os.Symlink(f.link, tmp); err != nil {
			return fmt.Errorf("link %s: %w", f.path, err)
		}
		return nil
	}
	if err := atomicfile.WriteTemp(tmp, f.data, f.mode, f.uid, f.gid); err != nil {
		if (f.uid >= 0 || f.gid >= 0) && errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("write %s (the agent runs as uid %d): %w", f.path, a.geteuid(), err)
		}
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// rollbackFiles puts the old set back. It is idempotent, so an interrupted
// rollback is finished by running it again:
//   - a target that existed: its backup, if present, is renamed over it
//     (absent: the target was never replaced);
//   - a target that did not exist: removed once its temp is gone (the temp
//     was renamed onto it), unless no rename had started (prepare);
//   - temps are removed.
func (a *Agent) rollbackFiles(j *journal) error {
	var errs []error
	for i := len(j.Files) - 1; i >= 0; i-- {
		jf := j.Files[i]
		switch {
		case jf.Existed && exists(jf.Backup):
			if err := a.mutate(); err != nil {
				return err
			}
			if err := os.Rename(jf.Backup, jf.Target); err != nil {
				errs = append(errs, fmt.Errorf("restore %s: %w", jf.Target, err))
				continue
			}
			// A backup hard-linked to a target never replaced is the same
			// file: rename is then a no-op and the backup remains.
			removeIfExists(jf.Backup)
		case !jf.Existed && j.Phase != phasePrepare && !exists(jf.Temp):
			if err := a.mutate(); err != nil {
				return err
			}
			if err := removeIfExists(jf.Target); err != nil {
				errs = append(errs, err)
			}
		}
		if exists(jf.Temp) {
			if err := a.mutate(); err != nil {
				return err
			}
			if err := removeIfExists(jf.Temp); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, syncDirs(j))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	a.pruneVersions(j.Versions)
	return nil
}

// finishCommitted removes the backups and temps of a committed journal,
// then the journal.
func (a *Agent) finishCommitted(j *journal) error {
	for _, jf := range j.Files {
		for _, p := range []string{jf.Backup, jf.Temp} {
			if exists(p) {
				if err := a.mutate(); err != nil {
					return err
				}
				if err := removeIfExists(p); err != nil {
					a.log.Warn("remove backup", "path", p, "err", err)
				}
			}
		}
	}
	if err := syncDirs(j); err != nil {
		a.log.Warn("fsync", "err", err)
	}
	a.pruneVersions(j.Versions)
	return a.removeJournal()
}

// recoverJournal finishes an install interrupted by a crash: a journal
// before commit is rolled back, a committed one rolled forward. When the
// crash may have happened after the service reloaded the new files, the
// next pass reloads again.
func (a *Agent) recoverJournal() error {
	b, err := os.ReadFile(a.state.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("journal %s is corrupt: %w", a.state.journalPath(), err)
	}
	log := a.log.With("certificate", j.Certificate, "phase", j.Phase)
	switch j.Phase {
	case phasePrepare, phaseSwap, phaseReload:
		log.Warn("rolling back an install interrupted by a crash")
		if err := a.rollbackFiles(&j); err != nil {
			return err
		}
		if j.Phase == phaseReload && len(j.Reload) > 0 {
			a.reloadAfter = j.Reload
		}
		return a.removeJournal()
	case phaseCommit:
		log.Info("finishing an install committed before a crash")
		return a.finishCommitted(&j)
	default:
		return fmt.Errorf("journal %s: unknown phase %q", a.state.journalPath(), j.Phase)
	}
}

func (a *Agent) setPhase(j *journal, phase string) error {
	j.Phase = phase
	return a.writeJournal(j)
}

func (a *Agent) writeJournal(j *journal) error {
	if err := a.mutate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(a.state.journalPath(), b, 0o600)
}

func (a *Agent) removeJournal() error {
	if err := a.mutate(); err != nil {
		return err
	}
	if err := removeIfExists(a.state.journalPath()); err != nil {
		return err
	}
	return atomicfile.SyncDir(a.state.dir)
}

// syncDirs fsyncs every directory of the journal's files.
func syncDirs(j *journal) error {
	seen := map[string]bool{}
	var errs []error
	for _, jf := range j.Files {
		dir := filepath.Dir(jf.Target)
		if !seen[dir] && exists(dir) {
			seen[dir] = true
			errs = append(errs, atomicfile.SyncDir(dir))
		}
	}
	return errors.Join(errs...)
}

// mkdirAll creates dir and its missing parents with mode 0755, whatever
// the umask (systemd units often set 0077), so services running as other
// users can still reach their files.
func mkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	if exists(dir) {
		return nil
	}
	if err := mkdirAll(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o755)
}

// randomSuffix names an install's temp and backup files.
func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
