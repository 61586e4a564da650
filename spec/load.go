package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
)

// ParsedFile is what ParseFile made of one file.
type ParsedFile struct {
	Objects []*Object
	Errors  ErrorList
}

// Files maps slash-separated file names, relative to the config root, to
// their parsed content. A reconciler can keep the Files of the last
// revision, re-read only the files that changed (ReadFile) and call State:
// the result is exactly what Load gives for the whole tree.
type Files map[string]ParsedFile

// State validates the union of the files as one revision (see Validate).
// It returns every error of every file and of the revision, sorted, as an
// ErrorList, or the State when there are none.
func (f Files) State() (State, error) {
	var objs []*Object
	var errs ErrorList
	for _, pf := range f {
		objs = append(objs, pf.Objects...)
		errs = append(errs, pf.Errors...)
	}
	errs = append(errs, Validate(objs)...)
	if len(errs) > 0 {
		errs.Sort()
		return State{}, errs
	}
	s := State{Objects: make(map[Key]*Object, len(objs))}
	for _, o := range objs {
		s.Objects[o.Key()] = o
	}
	return s, nil
}

// LoadDir loads the config tree under dir. Files are read through an
// os.Root, so symbolic links that leave dir are refused; they are reported as
// "FILE: symlink points outside the repository". Symbolic links to files
// inside dir are followed; links to directories are not (their targets are
// inside the tree and are loaded on their own).
func LoadDir(dir string) (State, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return State{}, err
	}
	defer root.Close()
	return Load(root.FS())
}

// Load reads every config file of fsys (see IsConfigFile), parses each with
// ParseFile and validates them together with Validate. On any problem it
// returns an ErrorList, sorted, holding all of them. Use LoadDir for a
// directory on disk: an os.DirFS would follow symbolic links out of it.
func Load(fsys fs.FS) (State, error) {
	return ReadFiles(fsys).State()
}

// ReadFiles reads and parses every config file of fsys. Problems with the
// tree itself (unreadable directories, symbolic links leaving it) are
// recorded as errors of the offending path.
//
// The tree is walked and read on the calling goroutine (an fs.FS need not
// be safe for concurrent use), while parsing, and hashing what was parsed,
// run on one goroutine per CPU. At most two files per parser wait between
// reading and parsing, so a large tree is never held in memory as bytes.
func ReadFiles(fsys fs.FS) Files {
	type parsed struct {
		name string
		file ParsedFile
	}
	workers := runtime.GOMAXPROCS(0)
	todo := make(chan readFile, 2*workers)
	done := make(chan parsed, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for f := range todo {
				done <- parsed{f.name, f.parse()}
			}
		})
	}
	files := Files{}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for p := range done {
			files[p.name] = p.file
		}
	}()

	var treeErrs []Error
	fail := func(name, msg string) { treeErrs = append(treeErrs, Error{File: name, Message: msg}) }
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			fail(name, "cannot read: "+describeFSError(err))
			return nil
		}
		if name != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			info, err := fs.Stat(fsys, name)
			if err != nil {
				fail(name, describeFSError(err))
				return nil
			}
			if info.IsDir() {
				return nil
			}
		} else if d.IsDir() {
			return nil
		}
		if IsConfigFile(name) {
			todo <- readConfigFile(fsys, name)
		}
		return nil
	})
	if err != nil {
		fail(".", "cannot read: "+describeFSError(err))
	}
	close(todo)
	wg.Wait()
	close(done)
	<-collected
	for _, e := range treeErrs {
		pf := files[e.File]
		pf.Errors = append(pf.Errors, e)
		files[e.File] = pf
	}
	return files
}

// IsConfigFile reports whether a slash-separated path relative to the config
// root names a desired-state file: it ends in .yaml or .yml, and neither it
// nor any directory on the way starts with "." (such as .git).
func IsConfigFile(name string) bool {
	ext := path.Ext(name)
	if ext != ".yaml" && ext != ".yml" {
		return false
	}
	for elem := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(elem, ".") {
			return false
		}
	}
	return true
}

// ReadFile reads one file of fsys, refusing files larger than MaxFileSize
// before reading them whole, and parses it with ParseFile.
func ReadFile(fsys fs.FS, name string) ParsedFile {
	return readConfigFile(fsys, name).parse()
}

// readFile is one config file read, or the reason it could not be.
type readFile struct {
	name string
	data []byte
	err  string // set when the file could not be read
}

// readConfigFile reads name from fsys, refusing a file larger than
// MaxFileSize before reading it whole.
func readConfigFile(fsys fs.FS, name string) readFile {
	f, err := fsys.Open(name)
	if err != nil {
		return readFile{name: name, err: describeFSError(err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return readFile{name: name, err: "cannot read: " + describeFSError(err)}
	}
	if len(data) > MaxFileSize {
		return readFile{name: name, err: fmt.Sprintf("file is larger than the limit of %d bytes", MaxFileSize)}
	}
	return readFile{name: name, data: data}
}

// parse parses the file with ParseFile and computes the hash of every
// object, so that work is spread over ReadFiles' parsers too.
func (f readFile) parse() ParsedFile {
	if f.err != "" {
		return ParsedFile{Errors: ErrorList{{File: f.name, Message: f.err}}}
	}
	objs, errs := ParseFile(f.name, f.data)
	for _, o := range objs {
		o.Hash()
	}
	return ParsedFile{Objects: objs, Errors: errs}
}

// describeFSError turns a file system error into a message without the
// (already reported) path.
func describeFSError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	// os.Root reports a symbolic link leaving the root with this
	// (unexported) error.
	case err.Error() == "path escapes from parent":
		return "symlink points outside the repository"
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist (dangling symlink?)"
	}
	return err.Error()
}
