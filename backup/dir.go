package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/certops/certops/atomicfile"
)

// Destination is where backups are kept.
type Destination interface {
	// String names the destination in records and messages.
	String() string
	// Put stores the local file under name atomically: afterwards either the
	// complete file is there or nothing changed.
	Put(ctx context.Context, name, file string) error
	// List returns the backups there, those with names ObjectName makes only.
	List(ctx context.Context) ([]Stored, error)
	// Delete removes the backup name.
	Delete(ctx context.Context, name string) error
}

// Dir is a directory destination, such as a mounted volume. It is created
// (0750) if missing.
type Dir string

func (d Dir) String() string { return string(d) }

// Put copies file into the directory under a temporary name, syncs it and
// renames it into place (mode 0600), then syncs the directory.
func (d Dir) Put(_ context.Context, name, file string) error {
	if err := os.MkdirAll(string(d), 0o750); err != nil {
		return err
	}
	src, err := os.Open(file)
	if err != nil {
		return err
	}
	defer src.Close()
	return atomicfile.WriteFrom(filepath.Join(string(d), name), src, 0o600)
}

// List returns the backup files in the directory.
func (d Dir) List(context.Context) ([]Stored, error) {
	entries, err := os.ReadDir(string(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Stored
	for _, e := range entries {
		s, ok := ParseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, err
		}
		s.Size = fi.Size()
		out = append(out, s)
	}
	return out, nil
}

// Delete removes the backup file name.
func (d Dir) Delete(_ context.Context, name string) error {
	if _, ok := ParseName(name); !ok {
		return fmt.Errorf("refusing to delete %q: not a backup name", name)
	}
	return os.Remove(filepath.Join(string(d), name))
}
