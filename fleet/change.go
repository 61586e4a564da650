package fleet

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
)

// ChangeOneFile modifies exactly one certificate in one certificate file of
// the generated tree in dir: variant n rewrites the second dnsName of one
// certificate to "vN.<first dnsName>". The file and the certificate are chosen
// from n alone, so distinct n give distinct changes and runs are repeatable;
// applying the same n twice in a row is an error, as it would change nothing.
// It returns the changed file, relative to dir with forward slashes.
func ChangeOneFile(dir string, n int) (string, error) {
	if n < 0 {
		return "", fmt.Errorf("fleet: change variant %d: must not be negative", n)
	}
	files, err := certificateFiles(dir)
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("fleet: no certificate files under %s", dir)
	}
	rel := files[n%len(files)]
	file := filepath.Join(dir, filepath.FromSlash(rel))
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("fleet: %w", err)
	}

	lines := bytes.SplitAfter(data, []byte("\n"))
	targets := secondDNSNameLines(lines)
	if len(targets) == 0 {
		return "", fmt.Errorf("fleet: %s: no certificate with two dnsNames", rel)
	}
	at := targets[(n/len(files))%len(targets)]
	first := bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(lines[at-1]), []byte("-")))
	changed := fmt.Appendf(nil, "    - v%d.%s\n", n, first)
	if bytes.Equal(lines[at], changed) {
		return "", fmt.Errorf("fleet: %s: change variant %d is already applied", rel, n)
	}
	lines[at] = changed

	if err := os.WriteFile(file, bytes.Join(lines, nil), 0o644); err != nil {
		return "", fmt.Errorf("fleet: %w", err)
	}
	return rel, nil
}

// certificateFiles lists the YAML files under dir/certificates, relative to
// dir with forward slashes, sorted.
func certificateFiles(dir string) ([]string, error) {
	var files []string
	root := os.DirFS(dir)
	err := fs.WalkDir(root, "certificates", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && path.Ext(name) == ".yaml" {
			files = append(files, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: list certificate files: %w", err)
	}
	slices.Sort(files)
	return files, nil
}

// secondDNSNameLines returns the indexes of the lines holding the second
// dnsNames entry of each certificate, in the layout writeCertificates emits.
func secondDNSNameLines(lines [][]byte) []int {
	var out []int
	for i, line := range lines {
		if string(line) == "  dnsNames:\n" && i+2 < len(lines) && bytes.HasPrefix(lines[i+2], []byte("    - ")) {
			out = append(out, i+2)
		}
	}
	return out
}

// WriteFiles writes files, named by slash-separated paths relative to dir,
// creating directories as needed; an empty content deletes the file. Tests
// use it to build revisions of a config repository by hand.
func WriteFiles(dir string, files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if content == "" {
			if err := os.Remove(p); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
