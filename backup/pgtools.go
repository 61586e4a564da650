package backup

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/certops/certops/localpg"
)

// Tools are the paths of pg_dump and pg_restore. Their major version must be
// at least the server's.
type Tools struct {
	PgDump, PgRestore string
}

// FindTools locates pg_dump and pg_restore ($CERTOPS_PG_BIN, PATH, then the
// standard install locations).
func FindTools() (Tools, error) {
	dump, err := localpg.Tool("pg_dump")
	if err != nil {
		return Tools{}, fmt.Errorf("backup: %w", err)
	}
	restore, err := localpg.Tool("pg_restore")
	if err != nil {
		return Tools{}, fmt.Errorf("backup: %w", err)
	}
	return Tools{PgDump: dump, PgRestore: restore}, nil
}

// Dump writes a custom-format dump of the database to file, without
// ownership or privileges so it restores under any role.
func (t Tools) Dump(ctx context.Context, databaseURL, file string) error {
	args := []string{"--format=custom", "--no-owner", "--no-acl", "--file=" + file}
	if err := run(ctx, t.PgDump, databaseURL, args); err != nil {
		return fmt.Errorf("backup: pg_dump: %w", err)
	}
	return nil
}

// Check verifies that file is a complete, readable dump: pg_restore lists
// its table of contents and then reads every entry, data included, as a
// restore would (the table of contents alone survives a truncated file).
func (t Tools) Check(ctx context.Context, file string) error {
	if err := run(ctx, t.PgRestore, "", []string{"--list", file}); err != nil {
		return fmt.Errorf("backup: %s is not a valid dump: pg_restore --list: %w", file, err)
	}
	if err := run(ctx, t.PgRestore, "", []string{"--file=" + os.DevNull, file}); err != nil {
		return fmt.Errorf("backup: %s is not a valid dump: pg_restore: %w", file, err)
	}
	return nil
}

// restore runs pg_restore of file into the database; clean drops the dump's
// objects first. It runs in one transaction and stops at the first error,
// so a failed restore changes nothing.
func (t Tools) restore(ctx context.Context, databaseURL, file string, clean bool) error {
	args := []string{"--no-owner", "--no-acl", "--exit-on-error", "--single-transaction"}
	if clean {
		args = append(args, "--clean", "--if-exists")
	}
	if err := run(ctx, t.PgRestore, databaseURL, append(args, file)); err != nil {
		return fmt.Errorf("backup: pg_restore: %w", err)
	}
	return nil
}

// run runs a PostgreSQL client program, connected to databaseURL unless it
// is "". A password in a postgres:// URL is passed in PGPASSWORD rather
// than on the command line, where other users could read it.
func run(ctx context.Context, program, databaseURL string, args []string) error {
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Env = os.Environ()
	if databaseURL != "" {
		conn, password := splitPassword(databaseURL)
		cmd.Args = slices.Insert(cmd.Args, 1, "--dbname="+conn)
		if password != "" {
			cmd.Env = append(cmd.Env, "PGPASSWORD="+password)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		return fmt.Errorf("%w: %s", err, msg)
	}
	return nil
}

// splitPassword removes the password from a postgres:// URL. Other
// connection strings are returned unchanged.
func splitPassword(databaseURL string) (conn, password string) {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.User == nil {
		return databaseURL, ""
	}
	password, ok := u.User.Password()
	if !ok {
		return databaseURL, ""
	}
	u.User = url.User(u.User.Username())
	return u.String(), password
}
