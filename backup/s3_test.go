package backup_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/certops/certops/backup"
	"github.com/certops/certops/pgtest"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit"
)

const (
	s3Access = "certops-test-access"
	s3Secret = "certops-test-secret-key"
	s3Bucket = "certops-backups"
)

// gateway is a versitygw S3 server on loopback with a posix backend.
type gateway struct {
	endpoint string // http://127.0.0.1:PORT
	cmd      *exec.Cmd
	client   *minio.Client
	exited   chan error // the process's exit
	stop     func()     // kills the process and waits for it; idempotent
}

// startGateway runs the pinned versitygw (go tool versitygw) on a free
// loopback port with bucket s3Bucket, and stops it when the test ends.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	out, err := exec.Command("go", "tool", "-n", "versitygw").Output()
	if err != nil {
		t.Fatalf("build versitygw (go tool -n versitygw): %v", err)
	}
	bin := strings.TrimSpace(string(out))
	root := t.TempDir()
	// versitygw binds the address it is given and does not report the port
	// it got for port 0: give it a port that was free, and another one
	// should something take it first.
	for attempt := 1; ; attempt++ {
		g, logs := runGateway(t, bin, root, testkit.FreeAddr(t))
		if g != nil {
			return g
		}
		if attempt == 3 || !strings.Contains(logs, "address already in use") {
			t.Fatalf("versitygw exited before it was ready:\n%s", logs)
		}
	}
}

// runGateway runs versitygw on addr and waits until it has created the
// bucket. When versitygw exits first, it returns nil and its output.
func runGateway(t *testing.T, bin, root, addr string) (*gateway, string) {
	t.Helper()
	logFile, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	logs := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	cmd := exec.Command(bin, "--access", s3Access, "--secret", s3Secret, "--port", addr, "posix", root)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	g := &gateway{endpoint: "http://" + addr, cmd: cmd, exited: make(chan error, 1)}
	go func() { g.exited <- cmd.Wait() }()
	g.stop = sync.OnceFunc(func() {
		_ = cmd.Process.Kill()
		<-g.exited
	})
	t.Cleanup(g.stop)

	g.client, err = minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(s3Access, s3Secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	exited, ready := false, false
	defer func() {
		if !exited && !ready {
			t.Logf("versitygw on %s:\n%s", addr, logs())
		}
	}()
	testkit.WaitFor(t, 20*time.Second, "versitygw on "+addr+" to create the bucket", func() bool {
		select {
		case err := <-g.exited:
			g.exited <- err // for stop
			exited = true
			return true
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return g.client.MakeBucket(ctx, s3Bucket, minio.MakeBucketOptions{}) == nil
	})
	if exited {
		return nil, logs()
	}
	ready = true
	return g, ""
}

func (g *gateway) target(prefix string) spec.S3Target {
	return spec.S3Target{
		Bucket: s3Bucket, Prefix: prefix, Endpoint: g.endpoint, Region: "us-east-1",
		AccessKeyIDEnv: "TEST_S3_ACCESS", SecretAccessKeyEnv: "TEST_S3_SECRET",
	}
}

func s3Env(k string) string {
	return map[string]string{"TEST_S3_ACCESS": s3Access, "TEST_S3_SECRET": s3Secret}[k]
}

// keys lists the bucket's object keys, sorted.
func (g *gateway) keys(t *testing.T) []string {
	t.Helper()
	var keys []string
	for obj := range g.client.ListObjects(context.Background(), s3Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	slices.Sort(keys)
	return keys
}

func (g *gateway) put(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		body := "old backup " + k
		if _, err := g.client.PutObject(context.Background(), s3Bucket, k, strings.NewReader(body), int64(len(body)),
			minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestS3BackupRetentionAndRestore(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	url, st := testDB(t)
	want := tableRows(t, url)
	db, _ := backup.DatabaseName(url)
	name := func(ago time.Duration) string { return backup.ObjectName(db, t0.Add(-ago)) }
	g.put(t,
		"certops/"+name(1*time.Hour), "certops/"+name(2*time.Hour), "certops/"+name(3*time.Hour),
		"certops/notes.txt", "elsewhere/"+name(4*time.Hour))

	p, err := backup.NewPolicy("offsite", spec.BackupPolicySpec{
		Retention:   spec.BackupRetention{Count: 2},
		Destination: spec.BackupDestination{S3: ptr(g.target("certops"))},
	}, s3Env)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := backup.Run(ctx, st, p, backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(t0)})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	wantKeys := []string{
		"certops/" + name(1*time.Hour), "certops/" + rep.Run.Object, "certops/notes.txt", "elsewhere/" + name(4*time.Hour),
	}
	slices.Sort(wantKeys)
	if got := g.keys(t); !cmp.Equal(got, wantKeys) {
		t.Errorf("bucket holds %v\nwant %v", got, wantKeys)
	}
	if run := lastRun(t, st); run.Result != store.BackupOK || run.Destination != "s3://"+s3Bucket+"/certops/" {
		t.Errorf("recorded %+v, want ok to s3://%s/certops/", run, s3Bucket)
	}

	// Download and restore into a fresh database.
	s3, err := backup.NewS3(g.target(""), s3Env)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dl.dump")
	if err := s3.Fetch(ctx, "certops/"+rep.Run.Object, file); err != nil {
		t.Fatal(err)
	}
	target := pgtest.EmptyDB(t)
	if _, err := backup.Restore(ctx, target, file, backup.RestoreOptions{Tools: tools(t)}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if diff := cmp.Diff(want, tableRows(t, target)); diff != "" {
		t.Errorf("restored rows differ (-source +restored):\n%s", diff)
	}
}

func TestS3FailingUploadIsReportedAndKeepsOlderBackups(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	url, st := testDB(t)
	db, _ := backup.DatabaseName(url)
	older := []string{backup.ObjectName(db, t0.Add(-48*time.Hour)), backup.ObjectName(db, t0.Add(-24*time.Hour))}
	g.put(t, older...)

	t.Run("wrong credentials", func(t *testing.T) {
		target := g.target("")
		p, err := backup.NewPolicy("offsite", spec.BackupPolicySpec{
			Retention: spec.BackupRetention{Count: 1}, Destination: spec.BackupDestination{S3: &target},
		}, func(k string) string {
			if k == "TEST_S3_SECRET" {
				return "wrong-secret"
			}
			return s3Env(k)
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = backup.Run(ctx, st, p, backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(t0)})
		if err == nil || !strings.Contains(err.Error(), "upload") {
			t.Fatalf("Run with a wrong secret: %v, want an upload error", err)
		}
		if run := lastRun(t, st); run.Result != store.BackupFailed || !strings.Contains(run.Error, "upload") {
			t.Errorf("recorded %+v, want failed with the upload error", run)
		}
		if got := g.keys(t); !cmp.Equal(got, sorted(older)) {
			t.Errorf("bucket holds %v, want the older backups %v", got, older)
		}
	})

	t.Run("server down", func(t *testing.T) {
		target := g.target("")
		p, err := backup.NewPolicy("offsite", spec.BackupPolicySpec{
			Retention: spec.BackupRetention{Count: 1}, Destination: spec.BackupDestination{S3: &target},
		}, s3Env)
		if err != nil {
			t.Fatal(err)
		}
		g.stop()
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err = backup.Run(ctx, st, p, backup.Options{DatabaseURL: url, Tools: tools(t), Now: clock(t0)})
		if err == nil {
			t.Fatal("Run against a stopped server succeeded")
		}
		if run := lastRun(t, st); run.Result != store.BackupFailed {
			t.Errorf("recorded %+v, want failed", run)
		}
		root := g.cmd.Args[len(g.cmd.Args)-1]
		entries, err := os.ReadDir(filepath.Join(root, s3Bucket))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				got = append(got, e.Name())
			}
		}
		if !cmp.Equal(got, sorted(older)) {
			t.Errorf("bucket directory holds %v, want the older backups %v", got, older)
		}
	})
}

func TestS3CredentialsFile(t *testing.T) {
	ctx := context.Background()
	g := startGateway(t)
	file := filepath.Join(t.TempDir(), "credentials")
	content := "# mounted from a Secret\n[other]\naws_access_key_id = nope\n\n[default]\naws_access_key_id = " + s3Access +
		"\naws_secret_access_key=" + s3Secret + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	s3, err := backup.NewS3(spec.S3Target{Bucket: s3Bucket, Endpoint: g.endpoint, CredentialsFile: file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := s3.List(ctx)
	if err != nil || len(list) != 0 {
		t.Errorf("List with a credentials file = %v, %v; want an empty list", list, err)
	}
	if _, err := backup.NewS3(spec.S3Target{Bucket: s3Bucket, CredentialsFile: filepath.Join(t.TempDir(), "missing")}, nil); err == nil {
		t.Error("NewS3 with a missing credentials file succeeded")
	}
	if _, err := backup.NewS3(spec.S3Target{Bucket: s3Bucket, AccessKeyIDEnv: "UNSET_A", SecretAccessKeyEnv: "UNSET_B"},
		func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "UNSET_A") {
		t.Errorf("NewS3 with unset credential variables: %v, want an error naming them", err)
	}
}

func ptr[T any](v T) *T { return &v }
