package examples_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"testing"

	"github.com/certops/certops/examples"
	"github.com/certops/certops/spec"
)

func TestConfigLoadsFromDisk(t *testing.T) {
	state, err := spec.LoadDir("config")
	if err != nil {
		t.Fatalf("LoadDir(config): %v", err)
	}
	checkCounts(t, state)
}

func TestConfigLoadsFromEmbed(t *testing.T) {
	state, err := spec.Load(examples.Config())
	if err != nil {
		t.Fatalf("Load(Config()): %v", err)
	}
	checkCounts(t, state)
}

func TestEmbedMatchesDisk(t *testing.T) {
	fromDisk, err := spec.LoadDir("config")
	if err != nil {
		t.Fatalf("LoadDir(config): %v", err)
	}
	fromEmbed, err := spec.Load(examples.Config())
	if err != nil {
		t.Fatalf("Load(Config()): %v", err)
	}
	if got, want := len(fromEmbed.Objects), len(fromDisk.Objects); got != want {
		t.Fatalf("embedded config has %d objects, disk has %d", got, want)
	}
	for key, d := range fromDisk.Objects {
		e, ok := fromEmbed.Objects[key]
		if !ok {
			t.Errorf("%s: on disk, not embedded", key)
			continue
		}
		if e.Hash() != d.Hash() {
			t.Errorf("%s: embedded content differs from disk", key)
		}
	}
}

// checkCounts pins the shape the README and `certops demo` describe.
func checkCounts(t *testing.T, state spec.State) {
	t.Helper()
	got := map[spec.Kind]int{}
	for key := range state.Objects {
		got[key.Kind]++
	}
	want := map[spec.Kind]int{
		spec.KindIssuer:              5,
		spec.KindAgent:               12,
		spec.KindCertificate:         10,
		spec.KindAlertPolicy:         1,
		spec.KindNotificationChannel: 4,
		spec.KindBackupPolicy:        1,
		spec.KindTrustBundle:         1,
		spec.KindRevocation:          2,
	}
	for _, kind := range spec.Kinds {
		if got[kind] != want[kind] {
			t.Errorf("%s: got %d objects, want %d", kind, got[kind], want[kind])
		}
	}
	if _, ok := state.Objects[spec.Key{Kind: spec.KindIssuer, Name: "internal-ca"}]; !ok {
		t.Errorf("issuer internal-ca missing; certops demo relies on it")
	}
	if _, ok := state.Objects[spec.Key{Kind: spec.KindAgent, Name: "web-01"}]; !ok {
		t.Errorf("agent web-01 missing; certops demo runs it")
	}
}

// TestReadmeDemoTokens checks that every agent's tokenSHA256 is the SHA-256 of
// the demo token README.md documents for it, and that every agent has one.
func TestReadmeDemoTokens(t *testing.T) {
	tokens := readmeTokens(t)
	state, err := spec.LoadDir("config")
	if err != nil {
		t.Fatalf("LoadDir(config): %v", err)
	}
	agents := 0
	for key, obj := range state.Objects {
		if key.Kind != spec.KindAgent {
			continue
		}
		agents++
		token, ok := tokens[key.Name]
		if !ok {
			t.Errorf("agent %s: no demo token in README.md", key.Name)
			continue
		}
		sum := sha256.Sum256([]byte(token))
		got := obj.Spec.(*spec.AgentSpec).TokenSHA256
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("agent %s: tokenSHA256 %s, want SHA-256 of %q = %s", key.Name, got, token, want)
		}
	}
	if len(tokens) != agents {
		t.Errorf("README.md lists %d demo tokens, config has %d agents", len(tokens), agents)
	}
}

// readmeTokens reads the demo-token table of README.md, rows like
// | `web-01` | `demo-token-web-01` |
func readmeTokens(t *testing.T) map[string]string {
	t.Helper()
	row := regexp.MustCompile("^\\| `([a-z0-9-]+)` +\\| `([^`]+)` +\\|")
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tokens := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			tokens[m[1]] = m[2]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return tokens
}
