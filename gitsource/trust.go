package gitsource

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/crypto/ssh"
)

// TrustedKeys are the keys whose commit signatures are accepted: OpenPGP
// public keys from armored keyrings and SSH keys from allowed_signers files.
// It is immutable once loaded.
type TrustedKeys struct {
	pgp openpgp.EntityList
	ssh []allowedSigner
}

// allowedSigner is one line of an allowed_signers file.
type allowedSigner struct {
	at         string // FILE:LINE, for messages
	principals string
	key        ssh.PublicKey
	namespaces []string  // patterns; nil allows every namespace
	validAfter time.Time // zero: no bound
	validUntil time.Time // valid-before; zero: no bound
}

// LoadTrustedKeys reads each file, an armored OpenPGP public keyring
// ("-----BEGIN PGP PUBLIC KEY BLOCK-----") or an SSH allowed_signers file in
// the format of ssh-keygen(1) and git's gpg.ssh.allowedSignersFile:
//
//	principals [options] keytype base64-key [comment]
//
// with the options namespaces="…", valid-after="…" and valid-before="…".
// Every line must parse and every file must hold at least one key: a file
// that silently trusted nothing would refuse every commit for a reason that
// is hard to see.
func LoadTrustedKeys(files []string) (*TrustedKeys, error) {
	if len(files) == 0 {
		return nil, errors.New("gitsource: no trusted key files")
	}
	k := &TrustedKeys{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("gitsource: trusted keys: %w", err)
		}
		if bytes.Contains(data, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
			el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
			if err != nil {
				return nil, fmt.Errorf("gitsource: trusted keys %s: OpenPGP keyring: %w", f, err)
			}
			k.pgp = append(k.pgp, el...)
			continue
		}
		if bytes.Contains(data, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")) {
			return nil, fmt.Errorf("gitsource: trusted keys %s: holds a private key; export only the public key (gpg --export --armor)", f)
		}
		signers, err := parseAllowedSigners(f, data)
		if err != nil {
			return nil, err
		}
		if len(signers) == 0 {
			return nil, fmt.Errorf("gitsource: trusted keys %s: no keys: want an armored OpenPGP public keyring or an SSH allowed_signers file", f)
		}
		k.ssh = append(k.ssh, signers...)
	}
	return k, nil
}

// Len is the number of trusted keys (OpenPGP entities and allowed signers).
func (k *TrustedKeys) Len() int { return len(k.pgp) + len(k.ssh) }

func parseAllowedSigners(file string, data []byte) ([]allowedSigner, error) {
	var out []allowedSigner
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := fmt.Sprintf("%s:%d", file, n)
		s, err := parseAllowedSigner(line)
		if err != nil {
			return nil, fmt.Errorf("gitsource: trusted keys %s: %w", at, err)
		}
		s.at = at
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("gitsource: trusted keys %s: %w", file, err)
	}
	return out, nil
}

// parseAllowedSigner parses "principals [options] keytype key [comment]".
// The options and key are the authorized_keys syntax, which x/crypto/ssh
// parses.
func parseAllowedSigner(line string) (allowedSigner, error) {
	principals, rest, err := cutField(line)
	if err != nil {
		return allowedSigner{}, err
	}
	if rest == "" {
		return allowedSigner{}, errors.New("want principals, options (optional), key type and key")
	}
	key, _, options, trailing, err := ssh.ParseAuthorizedKey([]byte(rest))
	if err != nil {
		return allowedSigner{}, fmt.Errorf("key: %w", err)
	}
	if len(bytes.TrimSpace(trailing)) > 0 {
		return allowedSigner{}, errors.New("one signer per line")
	}
	s := allowedSigner{principals: principals, key: key}
	for _, opt := range options {
		name, value, _ := strings.Cut(opt, "=")
		value = strings.Trim(value, `"`)
		switch strings.ToLower(name) {
		case "namespaces":
			s.namespaces = strings.Split(value, ",")
		case "valid-after":
			if s.validAfter, err = parseSSHTime(value); err != nil {
				return allowedSigner{}, fmt.Errorf("valid-after: %w", err)
			}
		case "valid-before":
			if s.validUntil, err = parseSSHTime(value); err != nil {
				return allowedSigner{}, fmt.Errorf("valid-before: %w", err)
			}
		case "cert-authority":
			return allowedSigner{}, errors.New("cert-authority (SSH certificates) is not supported: list the signing keys themselves")
		default:
			return allowedSigner{}, fmt.Errorf("unknown option %q", name)
		}
	}
	return s, nil
}

// cutField splits off the first whitespace-separated field, which may be
// double-quoted.
func cutField(line string) (field, rest string, err error) {
	if strings.HasPrefix(line, `"`) {
		end := strings.Index(line[1:], `"`)
		if end < 0 {
			return "", "", errors.New("unterminated quote in principals")
		}
		return line[1 : end+1], strings.TrimSpace(line[end+2:]), nil
	}
	field, rest, _ = strings.Cut(line, " ")
	if i := strings.IndexByte(field, '\t'); i >= 0 {
		field, rest = field[:i], field[i+1:]+" "+rest
	}
	return field, strings.TrimSpace(rest), nil
}

// parseSSHTime parses ssh-keygen's YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]; without
// Z the time is local, as in ssh-keygen.
func parseSSHTime(v string) (time.Time, error) {
	loc := time.Local
	if s, ok := strings.CutSuffix(v, "Z"); ok {
		v, loc = s, time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(v)]
	if !ok {
		return time.Time{}, fmt.Errorf("want YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z], got %q", v)
	}
	return time.ParseInLocation(layout, v, loc)
}

// allows reports whether the signer may sign in namespace at time t (the
// commit's committer time, as git passes it to ssh-keygen -Y verify).
func (s allowedSigner) allows(namespace string, t time.Time) error {
	if s.namespaces != nil && !matchesAny(s.namespaces, namespace) {
		return fmt.Errorf("%s does not allow namespace %q", s.at, namespace)
	}
	if !s.validAfter.IsZero() && t.Before(s.validAfter) {
		return fmt.Errorf("%s is valid only after %s", s.at, s.validAfter.Format(time.RFC3339))
	}
	if !s.validUntil.IsZero() && !t.Before(s.validUntil) {
		return fmt.Errorf("%s was valid only before %s", s.at, s.validUntil.Format(time.RFC3339))
	}
	return nil
}

// matchesAny matches name against an ssh pattern-list (* and ?; a pattern
// negated with ! that matches excludes the name whatever else matches).
func matchesAny(patterns []string, name string) bool {
	matched := false
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		neg := strings.HasPrefix(p, "!")
		ok, err := path.Match(strings.TrimPrefix(p, "!"), name)
		switch {
		case err != nil || !ok:
		case neg:
			return false
		default:
			matched = true
		}
	}
	return matched
}
