// Package atomicfile writes files so that a crash or a failed write leaves
// either the old file or the complete new one, never a partial one. The
// content goes to a temporary file in the target's directory, which gets
// its exact mode (whatever the umask), is fsynced, and is then renamed (or,
// for Create, hard-linked) into place; then the directory is fsynced. A
// failed write removes its temporary file.
package atomicfile

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile replaces path (or creates it) with data, atomically and
// durably. The file gets exactly perm.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return WriteFrom(path, bytes.NewReader(data), perm)
}

// WriteFrom is WriteFile with the content read from r, for content too
// large to hold in memory.
func WriteFrom(path string, r io.Reader, perm fs.FileMode) error {
	tmp, err := writeTemp(path, r, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Create writes path as WriteFile does, but only when nothing is at path
// yet; otherwise it fails with an error for which errors.Is(err,
// fs.ErrExist) is true and leaves what is there untouched. The new file
// appears whole and is never written over: of two processes racing to
// create path, one wins and the other gets fs.ErrExist. It needs a file
// system with hard links.
func Create(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, bytes.NewReader(data), perm)
	if err != nil {
		return err
	}
	// Link, not rename: link fails when path exists.
	err = os.Link(tmp, path)
	os.Remove(tmp)
	if err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// WriteTemp creates the file path, which must not exist (O_EXCL, so it is
// never a file someone else prepared), and writes it completely: data,
// then the owner uid and gid (-1 leaves one as created, as with os.Chown),
// then exactly perm, then fsync. It is the first step for callers that move
// files into place themselves, such as several files swapped as one
// transaction; on its own it is not atomic. On failure it removes the file
// it created.
func WriteTemp(path string, data []byte, perm fs.FileMode, uid, gid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := fill(f, bytes.NewReader(data), perm, uid, gid); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// SyncDir fsyncs the directory dir ("" is the current directory), so that
// the renames, links and removals in it are durable.
func SyncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeTemp writes r to a new temporary file next to path and returns its
// name.
func writeTemp(path string, r io.Reader, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return "", err
	}
	if err := fill(f, r, perm, -1, -1); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// fill writes r to f, sets its owner and mode, fsyncs and closes it.
func fill(f *os.File, r io.Reader, perm fs.FileMode, uid, gid int) error {
	_, err := io.Copy(f, r)
	if err == nil && (uid >= 0 || gid >= 0) {
		if err = f.Chown(uid, gid); err != nil {
			err = fmt.Errorf("chown to uid %d gid %d: %w", uid, gid, err)
		}
	}
	if err == nil {
		err = f.Chmod(perm) // after chown, which may clear mode bits
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
