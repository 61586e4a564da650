package backup

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/certops/certops/spec"
)

// S3 is a destination in an S3-compatible bucket. The bucket must exist.
type S3 struct {
	client *minio.Client
	bucket string
	prefix string // "" or ending in "/"
}

// NewS3 connects to the bucket of t (no request is made yet). Credentials
// come from the environment variables t names (read with getenv), else from
// t.CredentialsFile, else from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or
// the instance's IAM role. The endpoint defaults to AWS
// (https://s3.amazonaws.com).
func NewS3(t spec.S3Target, getenv func(string) string) (*S3, error) {
	creds, err := s3Credentials(t, getenv)
	if err != nil {
		return nil, err
	}
	endpoint := t.Endpoint
	if endpoint == "" {
		endpoint = "https://s3.amazonaws.com"
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("backup: s3 endpoint %q: want http(s)://host[:port]", endpoint)
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:  creds,
		Secure: u.Scheme == "https",
		Region: t.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("backup: s3 client: %w", err)
	}
	prefix := t.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &S3{client: client, bucket: t.Bucket, prefix: prefix}, nil
}

func s3Credentials(t spec.S3Target, getenv func(string) string) (*credentials.Credentials, error) {
	switch {
	case t.AccessKeyIDEnv != "" || t.SecretAccessKeyEnv != "":
		id, secret := getenv(t.AccessKeyIDEnv), getenv(t.SecretAccessKeyEnv)
		if t.AccessKeyIDEnv == "" || t.SecretAccessKeyEnv == "" || id == "" || secret == "" {
			return nil, fmt.Errorf("backup: s3 credentials: set both accessKeyIDEnv and secretAccessKeyEnv, "+
				"and both environment variables (%q, %q)", t.AccessKeyIDEnv, t.SecretAccessKeyEnv)
		}
		return credentials.NewStaticV4(id, secret, ""), nil
	case t.CredentialsFile != "":
		id, secret, err := readCredentialsFile(t.CredentialsFile)
		if err != nil {
			return nil, err
		}
		return credentials.NewStaticV4(id, secret, ""), nil
	default:
		return credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.IAM{},
		}), nil
	}
}

// readCredentialsFile reads aws_access_key_id and aws_secret_access_key
// from an AWS-style credentials file: its [default] section, or key = value
// lines before any section.
func readCredentialsFile(path string) (id, secret string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("backup: s3 credentials: %w", err)
	}
	section := "default"
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section != "default" {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "aws_access_key_id":
			id = strings.TrimSpace(value)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(value)
		}
	}
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("backup: s3 credentials file %s: want aws_access_key_id and aws_secret_access_key "+
			"in its [default] section", path)
	}
	return id, secret, nil
}

func (s *S3) String() string { return "s3://" + s.bucket + "/" + s.prefix }

// Put uploads file as prefix+name (S3 makes an object visible only once it
// is complete) and checks the stored size.
func (s *S3) Put(ctx context.Context, name, file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	key := s.prefix + name
	if _, err := s.client.FPutObject(ctx, s.bucket, key, file, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
	}); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return fmt.Errorf("check upload: %w", err)
	}
	if info.Size != fi.Size() {
		return fmt.Errorf("check upload: stored %d bytes, want %d", info.Size, fi.Size())
	}
	return nil
}

// List returns the backups directly under the prefix.
func (s *S3) List(ctx context.Context) ([]Stored, error) {
	var out []Stored
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix}) {
		if obj.Err != nil {
			return nil, obj.Err
		}
		st, ok := ParseName(strings.TrimPrefix(obj.Key, s.prefix))
		if !ok {
			continue
		}
		st.Size = obj.Size
		out = append(out, st)
	}
	return out, nil
}

// Delete removes the backup name.
func (s *S3) Delete(ctx context.Context, name string) error {
	if _, ok := ParseName(name); !ok {
		return fmt.Errorf("refusing to delete %q: not a backup name", name)
	}
	return s.client.RemoveObject(ctx, s.bucket, s.prefix+name, minio.RemoveObjectOptions{})
}

// Fetch downloads the object key (a full key, prefix included) to file.
func (s *S3) Fetch(ctx context.Context, key, file string) error {
	if err := s.client.FGetObject(ctx, s.bucket, key, file, minio.GetObjectOptions{}); err != nil {
		return fmt.Errorf("backup: download s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}
