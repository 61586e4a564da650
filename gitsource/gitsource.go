// Package gitsource fetches revisions of the config repository with go-git and
// exposes them to the reconciler: the current head of the configured ref (a
// cheap ls-remote poll that fetches only when the ref moved), the files of a
// commit as an io/fs.FS, and the files changed between two commits.
//
// A Repo opened with Open keeps a bare clone of the single configured ref (full
// history of that branch, no tags other than a configured one) in
// Config.CacheDir, or in memory when CacheDir is empty, and reuses an existing
// clone in CacheDir on restart. OpenLocal opens an existing repository on disk
// without cloning, for the offline `certops plan`.
package gitsource

import (
	"context"
	"errors"
	"fmt"
	redactpkg "github.com/certops/certops/redact"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certops/certops/state"
	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Config says which repository, ref and directory hold the desired state.
type Config struct {
	// URL of the repository: file://, https://, ssh://, scp-like git@host:path,
	// or a local path.
	URL string
	// Ref is a branch, a tag (lightweight or annotated) or a full 40-hex commit
	// hash. A name is looked up as refs/heads/NAME, then refs/tags/NAME; a full
	// refs/... name is taken as is. Empty means the branch the remote HEAD
	// points at.
	Ref string
	// Path is the slash-separated subdirectory holding the configuration;
	// default ".".
	Path string
	Auth Auth
	// CABundleFile is a PEM file of CAs trusted for https URLs in addition to
	// the system roots.
	CABundleFile string
	// CacheDir holds the bare clone; empty keeps the clone in memory.
	CacheDir string
}

// ErrSymlinkOutside is returned (wrapped in an *fs.PathError) for a symlink
// whose target is absolute or climbs above the repository root.
var ErrSymlinkOutside = errors.New("symlink points outside the repository")

// Repo is a clone of the configuration repository. Its methods are safe for
// concurrent use.
type Repo struct {
	logger  *slog.Logger
	base    string // cleaned Config.Path; "" for the repository root
	display string // URL without credentials, for messages

	// Immutable after Open; nil/zero for OpenLocal.
	remote    *git.Remote
	auth      transport.AuthMethod
	caBundle  []byte
	remoteRef plumbing.ReferenceName // e.g. refs/heads/main; empty when pinned
	localRef  plumbing.ReferenceName // where the fetched ref is stored locally
	pinned    plumbing.Hash          // commit of a commit-pinned Ref
	refName   string                 // state.Revision.Ref

	// mu guards the object and reference storage: fetches write, everything
	// else reads. go-git's memory storage is not safe for concurrent writes
	// and reads.
	mu     sync.RWMutex
	repo   *git.Repository
	closer func() error

	// pollMu serialises Head; the fields below belong to it.
	pollMu      sync.Mutex
	fetchedHash plumbing.Hash // remote ref's hash at the last fetch
	reported    plumbing.Hash // commit last returned by Head

	fetches atomic.Int64 // fetches performed, for logs and tests
}

// Open clones cfg.URL (or reuses the clone in cfg.CacheDir) and fetches the
// configured ref. The clone is bare and single-branch without tags; it keeps
// the full history of that branch so that ChangedFiles can diff the last
// applied commit against a new head without another round trip.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Repo, error) {
	r, err := open(ctx, cfg, logger)
	return r, redactpkg.Error(err)
}

func open(ctx context.Context, cfg Config, logger *slog.Logger) (*Repo, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p, err := cfg.prepare()
	if err != nil {
		return nil, err
	}
	r := &Repo{
		logger:  logger.With("repo", p.display),
		base:    p.base,
		display: p.display,
		auth:    p.auth,
	}
	if cfg.CABundleFile != "" {
		if r.caBundle, err = os.ReadFile(cfg.CABundleFile); err != nil {
			return nil, fmt.Errorf("gitsource: CA bundle: %w", err)
		}
	}
	url := p.url
	if err := r.openStorage(cfg.CacheDir, url); err != nil {
		return nil, err
	}
	if err := r.resolveRef(ctx, cfg.Ref); err != nil {
		r.Close()
		return nil, err
	}
	r.pollMu.Lock()
	defer r.pollMu.Unlock()
	if _, err := r.sync(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// prepared is a Config checked as far as it can be without the network.
type prepared struct {
	url, base, display string
	auth               transport.AuthMethod
}

// prepare checks what can be checked without the network — the URL, the
// path, the credentials and the CA bundle — and returns what Open needs of
// it.
func (cfg Config) prepare() (prepared, error) {
	if cfg.URL == "" {
		return prepared{}, errors.New("gitsource: repository URL is empty")
	}
	base, err := cleanBase(cfg.Path)
	if err != nil {
		return prepared{}, err
	}
	url := normalizeURL(cfg.URL)
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return prepared{}, fmt.Errorf("gitsource: parse repository URL: %w", err)
	}
	p := prepared{url: url, base: base, display: redact(ep)}
	if p.auth, err = cfg.Auth.method(ep); err != nil {
		return prepared{}, fmt.Errorf("gitsource: %s: %w", p.display, err)
	}
	if cfg.CABundleFile != "" {
		if _, err := os.Stat(cfg.CABundleFile); err != nil {
			return prepared{}, fmt.Errorf("gitsource: CA bundle: %w", err)
		}
	}
	return p, nil
}

// OpenLocal opens an existing repository in dir (a work tree, a directory
// inside one, or a bare repository) without cloning or fetching. Its FS and
// ChangedFiles are rooted at the repository root (Path "."); use fs.Sub and a
// path prefix to narrow them. Head is not available.
func OpenLocal(dir string) (*Repo, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if errors.Is(err, git.ErrRepositoryNotExists) { // maybe inside a work tree
		repo, err = git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	}
	if err != nil {
		return nil, fmt.Errorf("gitsource: open %s: %w", dir, err)
	}
	return &Repo{
		logger:  slog.New(slog.DiscardHandler),
		display: dir,
		repo:    repo,
		closer:  func() error { return nil },
	}, nil
}

// Close releases open pack files of an on-disk clone.
func (r *Repo) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer()
}

// Head returns the current head of the configured ref. It asks the remote for
// the ref's hash (one ls-remote round trip) and fetches only when that hash
// differs from the last fetched one. changed reports whether the commit
// differs from the one the previous Head call returned; the first call after
// Open reports true. A commit-pinned source never contacts the remote again.
func (r *Repo) Head(ctx context.Context) (rev state.Revision, changed bool, err error) {
	if r.remote == nil {
		return state.Revision{}, false, errors.New("gitsource: Head needs a repository opened with Open")
	}
	r.pollMu.Lock()
	defer r.pollMu.Unlock()
	commit, err := r.sync(ctx)
	if err != nil {
		return state.Revision{}, false, err
	}
	rev, err = r.revision(commit)
	if err != nil {
		return state.Revision{}, false, err
	}
	changed = commit != r.reported
	r.reported = commit
	return rev, changed, nil
}

// Resolve turns a revision expression into a commit hash: a branch, tag (an
// annotated tag is peeled), HEAD, a full or abbreviated hash, or anything
// else go-git's ResolveRevision understands such as HEAD~1 or main^.
func (r *Repo) Resolve(rev string) (string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, err := r.repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return "", fmt.Errorf("gitsource: resolve %q in %s: %w", rev, r.display, err)
	}
	if _, err := r.repo.CommitObject(*h); err != nil {
		return "", fmt.Errorf("gitsource: resolve %q in %s: %s is not a commit: %w", rev, r.display, h, err)
	}
	return h.String(), nil
}

// Fetches reports how many fetches (clone included) this Repo has performed.
func (r *Repo) Fetches() int64 { return r.fetches.Load() }

// openStorage opens the clone in cacheDir, creating it if needed, or creates
// an in-memory one, and points the "origin" remote at url.
func (r *Repo) openStorage(cacheDir, url string) error {
	var st storage.Storer
	r.closer = func() error { return nil }
	if cacheDir == "" {
		st = memory.NewStorage()
	} else {
		if err := os.MkdirAll(cacheDir, 0o700); err != nil {
			return fmt.Errorf("gitsource: cache dir: %w", err)
		}
		// A 16 MiB object cache instead of go-git's 96 MiB default: the
		// reconciler reads each changed blob once, and at 50,000
		// certificates the default cache alone was a fifth of its heap.
		fst := filesystem.NewStorageWithOptions(osfs.New(cacheDir), cache.NewObjectLRU(16*cache.MiByte),
			filesystem.Options{KeepDescriptors: true})
		st, r.closer = fst, fst.Close
	}
	repo, err := git.Open(st, nil)
	switch {
	case errors.Is(err, git.ErrRepositoryNotExists):
		if repo, err = git.Init(st, nil); err != nil {
			return fmt.Errorf("gitsource: init clone in %q: %w", cacheDir, err)
		}
	case err != nil:
		return fmt.Errorf("gitsource: open clone in %q: %w", cacheDir, err)
	default:
		r.logger.Info("reusing existing clone", "dir", cacheDir)
	}
	r.repo = repo

	remoteCfg := &gitconfig.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{url}}
	remote, err := repo.Remote(git.DefaultRemoteName)
	if err == nil && (len(remote.Config().URLs) != 1 || remote.Config().URLs[0] != url) {
		if err := repo.DeleteRemote(git.DefaultRemoteName); err != nil {
			return fmt.Errorf("gitsource: reset remote: %w", err)
		}
		err = git.ErrRemoteNotFound
	}
	if errors.Is(err, git.ErrRemoteNotFound) {
		remote, err = repo.CreateRemote(remoteCfg)
	}
	if err != nil {
		return fmt.Errorf("gitsource: configure remote: %w", err)
	}
	r.remote = remote
	return nil
}

// resolveRef decides once, at Open, which remote ref the source follows.
func (r *Repo) resolveRef(ctx context.Context, ref string) error {
	if isFullHash(ref) {
		r.pinned = plumbing.NewHash(ref)
		r.refName = ref
		r.localRef = "refs/certops/pinned"
		return nil
	}
	refs, err := r.listRemote(ctx)
	if err != nil {
		return err
	}
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, ref := range refs {
		byName[ref.Name()] = ref
	}
	var candidates []plumbing.ReferenceName
	switch {
	case ref == "":
		head, ok := byName[plumbing.HEAD]
		if !ok {
			return fmt.Errorf("gitsource: %s has no HEAD; set a ref", r.display)
		}
		if head.Type() == plumbing.SymbolicReference {
			candidates = []plumbing.ReferenceName{head.Target()}
		} else { // server without the symref capability: find a branch at HEAD
			for _, name := range []plumbing.ReferenceName{"refs/heads/main", "refs/heads/master"} {
				if b, ok := byName[name]; ok && b.Hash() == head.Hash() {
					candidates = append(candidates, name)
				}
			}
		}
	case strings.HasPrefix(ref, "refs/"):
		candidates = []plumbing.ReferenceName{plumbing.ReferenceName(ref)}
	default:
		candidates = []plumbing.ReferenceName{plumbing.NewBranchReferenceName(ref), plumbing.NewTagReferenceName(ref)}
	}
	for _, name := range candidates {
		if _, ok := byName[name]; !ok {
			continue
		}
		r.remoteRef = name
		r.refName = name.Short()
		switch {
		case name.IsBranch():
			r.localRef = plumbing.NewRemoteReferenceName(git.DefaultRemoteName, name.Short())
		case name.IsTag():
			r.localRef = name
		default:
			r.localRef = plumbing.ReferenceName("refs/certops/" + strings.TrimPrefix(string(name), "refs/"))
		}
		return nil
	}
	if ref == "" {
		return fmt.Errorf("gitsource: %s: cannot tell which branch HEAD points at; set a ref", r.display)
	}
	return fmt.Errorf("gitsource: ref %q not found in %s", ref, r.display)
}

// sync makes sure the local clone has the remote ref's current commit and
// returns it. The caller holds pollMu.
func (r *Repo) sync(ctx context.Context) (plumbing.Hash, error) {
	if !r.pinned.IsZero() {
		return r.pinned, r.syncPinned(ctx)
	}
	refs, err := r.listRemote(ctx)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	var remoteHash plumbing.Hash
	for _, ref := range refs {
		if ref.Name() == r.remoteRef {
			remoteHash = ref.Hash()
		}
	}
	if remoteHash.IsZero() {
		return plumbing.ZeroHash, fmt.Errorf("gitsource: ref %s no longer exists in %s", r.remoteRef, r.display)
	}
	if remoteHash != r.fetchedHash {
		if err := r.fetch(ctx, remoteHash); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.peel(r.fetchedHash)
}

// fetch brings the local ref up to remoteHash, incrementally. If the object is
// already present (a reused clone, or a ref moved back), no fetch is needed.
func (r *Repo) fetch(ctx context.Context, remoteHash plumbing.Hash) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hasObject(remoteHash) {
		if err := r.repo.Storer.SetReference(plumbing.NewHashReference(r.localRef, remoteHash)); err != nil {
			return fmt.Errorf("gitsource: update %s: %w", r.localRef, err)
		}
		r.fetchedHash = remoteHash
		return nil
	}
	start := time.Now()
	first := r.fetchedHash.IsZero()
	if first {
		// The first fetch brings the ref's whole history and may take a
		// while on a big repository: say so now, and relay the server's
		// progress, rather than stay silent until it ends.
		r.logger.Info("fetching the repository for the first time", "ref", r.remoteRef, "url", r.display)
	}
	spec := gitconfig.RefSpec(fmt.Sprintf("+%s:%s", r.remoteRef, r.localRef))
	progress := newProgressLog(r.logger, r.remoteRef.String(), 5*time.Second)
	err := r.remote.FetchContext(ctx, &git.FetchOptions{
		RefSpecs: []gitconfig.RefSpec{spec},
		Auth:     r.auth,
		CABundle: r.caBundle,
		Tags:     git.NoTags,
		Force:    true,
		Progress: progress,
	})
	progress.flush()
	r.fetches.Add(1)
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("gitsource: fetch %s from %s: %w", r.remoteRef, r.display, err)
	}
	ref, err := r.repo.Storer.Reference(r.localRef)
	if err != nil {
		return fmt.Errorf("gitsource: fetch %s from %s: %w", r.remoteRef, r.display, err)
	}
	// The ref may have moved again between ls-remote and fetch; what was
	// fetched is consistent, and the next poll sees any newer hash.
	r.fetchedHash = ref.Hash()
	r.logger.Info("fetched", "ref", r.remoteRef, "hash", ref.Hash().String(), "first", first, "duration", time.Since(start))
	return nil
}

// syncPinned fetches a pinned commit once. It first asks for exactly that
// commit; servers that refuse unadvertised objects get a fetch of all
// branches and tags instead.
func (r *Repo) syncPinned(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hasObject(r.pinned) {
		return nil
	}
	opts := &git.FetchOptions{
		RefSpecs: []gitconfig.RefSpec{gitconfig.RefSpec(fmt.Sprintf("%s:%s", r.pinned, r.localRef))},
		Auth:     r.auth,
		CABundle: r.caBundle,
		Tags:     git.NoTags,
		Force:    true,
	}
	err := r.remote.FetchContext(ctx, opts)
	r.fetches.Add(1)
	if errors.Is(err, git.ErrExactSHA1NotSupported) {
		opts.RefSpecs = []gitconfig.RefSpec{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"}
		err = r.remote.FetchContext(ctx, opts)
		r.fetches.Add(1)
	}
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("gitsource: fetch commit %s from %s: %w", r.pinned, r.display, err)
	}
	if !r.hasObject(r.pinned) {
		return fmt.Errorf("gitsource: commit %s not found in %s", r.pinned, r.display)
	}
	return nil
}

func (r *Repo) listRemote(ctx context.Context) ([]*plumbing.Reference, error) {
	refs, err := r.remote.ListContext(ctx, &git.ListOptions{Auth: r.auth, CABundle: r.caBundle})
	if err != nil {
		return nil, fmt.Errorf("gitsource: list refs of %s: %w", r.display, err)
	}
	return refs, nil
}

func (r *Repo) hasObject(h plumbing.Hash) bool {
	return r.repo.Storer.HasEncodedObject(h) == nil
}

// peel follows annotated tags to the commit they point at. The caller holds mu.
func (r *Repo) peel(h plumbing.Hash) (plumbing.Hash, error) {
	for range 10 {
		tag, err := r.repo.TagObject(h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return h, nil // not a tag object
		}
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("gitsource: read tag %s: %w", h, err)
		}
		h = tag.Target
	}
	return plumbing.ZeroHash, fmt.Errorf("gitsource: tag chain too long at %s", h)
}

func (r *Repo) revision(commit plumbing.Hash) (state.Revision, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, err := r.repo.CommitObject(commit)
	if err != nil {
		return state.Revision{}, fmt.Errorf("gitsource: read commit %s: %w", commit, err)
	}
	return state.Revision{
		Ref:     r.refName,
		Commit:  commit.String(),
		Author:  fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email),
		Message: c.Message,
		Time:    c.Committer.When,
	}, nil
}

// commit resolves a full or abbreviated hash (or any revision) to a commit.
// The caller holds mu.
func (r *Repo) commit(rev string) (*object.Commit, error) {
	var h plumbing.Hash
	if isFullHash(rev) {
		h = plumbing.NewHash(rev)
	} else {
		p, err := r.repo.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			return nil, fmt.Errorf("gitsource: resolve %q: %w", rev, err)
		}
		h = *p
	}
	c, err := r.repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("gitsource: commit %s: %w", h, err)
	}
	return c, nil
}

// isFullHash reports whether s is a full lower-case SHA-1 hex hash.
func isFullHash(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// cleanBase validates Config.Path and returns it cleaned, "" for the root.
func cleanBase(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	c := path.Clean(strings.TrimPrefix(filepath.ToSlash(p), "./"))
	if c == "." || c == "/" {
		return "", nil
	}
	c = strings.TrimPrefix(c, "/")
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("gitsource: path %q leaves the repository", p)
	}
	return c, nil
}

// normalizeURL makes a relative local path absolute; URLs and scp-like
// addresses are returned unchanged.
func normalizeURL(u string) string {
	if strings.Contains(u, "://") {
		return u
	}
	if _, err := os.Stat(u); err == nil {
		if abs, err := filepath.Abs(u); err == nil {
			return abs
		}
	}
	return u
}

// redact renders an endpoint without its credentials: no password, no
// token in the user name or the query (see package redact).
func redact(ep *transport.Endpoint) string {
	if ep.Protocol == "file" {
		return ep.Path
	}
	return redactpkg.URL(ep.String())
}
