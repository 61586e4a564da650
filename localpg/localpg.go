// Package localpg runs a throwaway PostgreSQL cluster from the server binaries
// installed on the machine (initdb, pg_ctl). `certops demo` and the test
// harness use it; production deployments point certops at a real server.
//
// When the current process runs as root, the cluster is initialised and run
// as the "postgres" OS user, since PostgreSQL refuses to run as root.
package localpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinEnv names the environment variable that points at the directory holding
// initdb and pg_ctl; it takes precedence over PATH and the usual install locations.
const BinEnv = "CERTOPS_PG_BIN"

// Options configure Start.
type Options struct {
	// Dir is the parent directory of the cluster: the data directory, the unix
	// socket and the server log live under it. It is created if missing. Empty
	// means a fresh directory under os.TempDir(), removed again by Stop.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Fast turns durability off (fsync, synchronous_commit, full_page_writes):
	// for tests and the demo only, a crash may corrupt the cluster.
	Fast bool
	// BinDir holds initdb and pg_ctl; empty means $CERTOPS_PG_BIN, then PATH,
	// then the highest /usr/lib/postgresql/*/bin.
	BinDir string
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// Cluster is a running (or attached) local PostgreSQL cluster.
type Cluster struct {
	dir        string
	port       int
	bin        binaries
	runAs      *syscall.Credential
	removeDir  bool
	logger     *slog.Logger
	fastConfig bool
}

// Start initialises a cluster in opts.Dir (unless one is already there) and
// starts the server, waiting until it accepts connections.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	if err := c.prepareDir(); err != nil {
		return nil, err
	}
	if err := c.initdb(ctx); err != nil {
		return nil, err
	}
	if err := c.start(ctx, opts.Port == 0); err != nil {
		return nil, err
	}
	return c, nil
}

// Attach returns a handle on a cluster another process started with the same
// Dir and Port, so it can be checked or stopped. It starts nothing.
func Attach(opts Options) (*Cluster, error) {
	if opts.Dir == "" || opts.Port == 0 {
		return nil, errors.New("localpg: attach needs the cluster's Dir and Port")
	}
	return newCluster(opts)
}

func newCluster(opts Options) (*Cluster, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bin, err := findBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	runAs, err := serverCredential()
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: opts.Dir, port: opts.Port, bin: bin, runAs: runAs, logger: logger, fastConfig: opts.Fast}
	if c.dir == "" {
		dir, err := os.MkdirTemp("", "certops-pg-")
		if err != nil {
			return nil, fmt.Errorf("localpg: create cluster directory: %w", err)
		}
		c.dir, c.removeDir = dir, true
	}
	if c.dir, err = filepath.Abs(c.dir); err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	return c, nil
}

// Dir is the cluster's parent directory.
func (c *Cluster) Dir() string { return c.dir }

// Port is the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir is the PostgreSQL data directory.
func (c *Cluster) DataDir() string { return filepath.Join(c.dir, "data") }

// LogFile is the server log.
func (c *Cluster) LogFile() string { return filepath.Join(c.dir, "postgres.log") }

// URL is a connection URL for database dbname as the superuser "postgres"
// (trust authentication, loopback only).
func (c *Cluster) URL(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Running reports whether the server is up (pg_ctl status).
func (c *Cluster) Running(ctx context.Context) bool {
	_, err := c.run(ctx, c.bin.pgCtl, "status", "-D", c.DataDir())
	return err == nil
}

// Stop shuts the server down (fast mode: open sessions are disconnected). If
// Start created the directory itself, Stop removes it.
func (c *Cluster) Stop(ctx context.Context) error {
	if c.Running(ctx) {
		if out, err := c.run(ctx, c.bin.pgCtl, "stop", "-D", c.DataDir(), "-m", "fast", "-w", "-t", "60"); err != nil {
			return fmt.Errorf("localpg: pg_ctl stop: %w: %s", err, out)
		}
		c.logger.Info("postgres stopped", "dir", c.dir)
	}
	if c.removeDir {
		if err := os.RemoveAll(c.dir); err != nil {
			return fmt.Errorf("localpg: remove cluster directory: %w", err)
		}
	}
	return nil
}

// CreateDatabase creates database name.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	return c.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// DropDatabase drops database name if it exists, disconnecting its sessions.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	return c.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func (c *Cluster) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("localpg: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("localpg: %s: %w", sql, err)
	}
	return nil
}

// prepareDir creates the cluster directory and, when the server runs as
// another user, hands it over and checks that user can reach it.
func (c *Cluster) prepareDir() error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("localpg: create cluster directory: %w", err)
	}
	if c.runAs == nil {
		return nil
	}
	if err := os.Chmod(c.dir, 0o755); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	if err := os.Chown(c.dir, int(c.runAs.Uid), int(c.runAs.Gid)); err != nil {
		return fmt.Errorf("localpg: hand %s to the postgres user: %w", c.dir, err)
	}
	for p := filepath.Dir(c.dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("localpg: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("localpg: directory %s is not traversable by the postgres user (mode %v): "+
				"put the cluster under %s or chmod o+x it", p, fi.Mode().Perm(), os.TempDir())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func (c *Cluster) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.DataDir(), "PG_VERSION")); err == nil {
		c.logger.Info("reusing postgres data directory", "dir", c.DataDir())
		return nil
	}
	start := time.Now()
	out, err := c.run(ctx, c.bin.initdb, "-D", c.DataDir(), "--auth=trust", "-U", "postgres",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	if err != nil {
		return fmt.Errorf("localpg: initdb: %w: %s", err, out)
	}
	c.logger.Info("postgres cluster initialised", "dir", c.DataDir(), "took", time.Since(start))
	return nil
}

// start runs pg_ctl start; with pickPort it chooses a free port and retries
// if another process grabbed it in between.
func (c *Cluster) start(ctx context.Context, pickPort bool) error {
	const attempts = 3
	for i := 1; ; i++ {
		if pickPort {
			port, err := freePort()
			if err != nil {
				return err
			}
			c.port = port
		}
		logOffset := fileSize(c.LogFile())
		out, err := c.run(ctx, c.bin.pgCtl, "start", "-w", "-t", "60", "-D", c.DataDir(), "-l", c.LogFile(), "-o", c.serverOptions())
		if err == nil {
			c.logger.Info("postgres started", "port", c.port, "dir", c.dir)
			return nil
		}
		serverLog := readFrom(c.LogFile(), logOffset)
		if pickPort && i < attempts && strings.Contains(serverLog, "Address already in use") {
			c.logger.Warn("postgres port taken, retrying", "port", c.port)
			continue
		}
		return fmt.Errorf("localpg: pg_ctl start on port %d: %w: %s\nserver log:\n%s", c.port, err, out, serverLog)
	}
}

func (c *Cluster) serverOptions() string {
	opts := []string{
		"-c listen_addresses=127.0.0.1",
		"-p " + strconv.Itoa(c.port),
		"-c unix_socket_directories=" + c.dir,
	}
	if c.fastConfig {
		opts = append(opts, "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
	}
	return strings.Join(opts, " ")
}

// run executes a PostgreSQL tool as the server's user and returns its combined output.
func (c *Cluster) run(ctx context.Context, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = c.dir
	cmd.Env = toolEnv()
	if c.runAs != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.runAs}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The postmaster outlives pg_ctl; it must not keep our pipe open.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// toolEnv is the environment without PG* variables, which would redirect pg_ctl.
func toolEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// serverCredential is the user to run the server as: nil (ourselves) unless
// we are root, then the "postgres" OS user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("localpg: running as root, and PostgreSQL will not run as root: "+
			"create a 'postgres' OS user (the server package does) or run as another user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("localpg: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("localpg: postgres gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}, nil
}

type binaries struct {
	initdb, pgCtl string
}

// findBinaries locates initdb and pg_ctl in dir, $CERTOPS_PG_BIN, PATH, or
// the highest-versioned standard install location.
func findBinaries(dir string) (binaries, error) {
	if dir == "" {
		dir = os.Getenv(BinEnv)
	}
	if dir != "" {
		b := binaries{initdb: filepath.Join(dir, "initdb"), pgCtl: filepath.Join(dir, "pg_ctl")}
		for _, p := range []string{b.initdb, b.pgCtl} {
			if _, err := os.Stat(p); err != nil {
				return binaries{}, fmt.Errorf("localpg: %s not found in %s (from %s or Options.BinDir): %w",
					filepath.Base(p), dir, BinEnv, err)
			}
		}
		return b, nil
	}
	initdb, err1 := exec.LookPath("initdb")
	pgCtl, err2 := exec.LookPath("pg_ctl")
	if err1 == nil && err2 == nil {
		return binaries{initdb: initdb, pgCtl: pgCtl}, nil
	}
	for _, d := range installDirs() {
		b := binaries{initdb: filepath.Join(d, "initdb"), pgCtl: filepath.Join(d, "pg_ctl")}
		if fileExists(b.initdb) && fileExists(b.pgCtl) {
			return b, nil
		}
	}
	return binaries{}, fmt.Errorf("localpg: initdb not found: install the PostgreSQL server package or set %s "+
		"to the directory holding initdb and pg_ctl", BinEnv)
}

// installDirs lists the standard server binary directories, highest version first.
func installDirs() []string {
	var dirs []string
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(pattern) // patterns are constant and valid
		dirs = append(dirs, m...)
	}
	version := func(d string) int {
		base := filepath.Base(filepath.Dir(d))
		n, _ := strconv.Atoi(strings.TrimPrefix(base, "pgsql-"))
		return n
	}
	sort.SliceStable(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	return dirs
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("localpg: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the file's content from offset on (at most the last 4 KiB).
func readFrom(p string, offset int64) string {
	b, err := os.ReadFile(p)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	b = b[offset:]
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return strings.TrimSpace(string(b))
}

// EnsureDatabase creates database name unless it exists.
func (c *Cluster) EnsureDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("localpg: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	if exists {
		return nil
	}
	return c.CreateDatabase(ctx, name)
}
