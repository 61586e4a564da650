package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/certops/certops/spec"
	"github.com/certops/certops/store"
)

// ErrNoPolicy is returned (wrapped) when the database holds no BackupPolicy.
var ErrNoPolicy = errors.New("no BackupPolicy has been applied from Git")

// StoredPolicy reads the BackupPolicy applied from Git: the one called name,
// or the only one when name is "".
func StoredPolicy(ctx context.Context, st Store, name string) (string, spec.BackupPolicySpec, error) {
	var obj store.StoredObject
	if name != "" {
		o, err := st.GetObject(ctx, spec.KindBackupPolicy, name)
		if errors.Is(err, store.ErrNotFound) {
			return "", spec.BackupPolicySpec{}, fmt.Errorf("backup: BackupPolicy %q: %w", name, ErrNoPolicy)
		}
		if err != nil {
			return "", spec.BackupPolicySpec{}, fmt.Errorf("backup: %w", err)
		}
		obj = o
	} else {
		objs, _, err := st.ListObjects(ctx, store.ObjectQuery{Kind: spec.KindBackupPolicy, Limit: 2})
		if err != nil {
			return "", spec.BackupPolicySpec{}, fmt.Errorf("backup: %w", err)
		}
		switch len(objs) {
		case 0:
			return "", spec.BackupPolicySpec{}, fmt.Errorf("backup: %w", ErrNoPolicy)
		case 1:
			obj = objs[0]
		default:
			return "", spec.BackupPolicySpec{}, fmt.Errorf("backup: more than one BackupPolicy: name one with --policy")
		}
	}
	o, err := obj.Decode()
	if err != nil {
		return "", spec.BackupPolicySpec{}, fmt.Errorf("backup: %w", err)
	}
	return obj.Name, *o.Spec.(*spec.BackupPolicySpec), nil
}

// NewPolicy turns a BackupPolicy's spec into a Policy. getenv reads the S3
// credentials' environment variables.
func NewPolicy(name string, s spec.BackupPolicySpec, getenv func(string) string) (Policy, error) {
	p := Policy{Name: name, Retention: Retention{Count: s.Retention.Count}}
	if s.Schedule != "" {
		sched, err := spec.ParseSchedule(s.Schedule)
		if err != nil {
			return Policy{}, fmt.Errorf("backup: BackupPolicy %s: %w", name, err)
		}
		p.Schedule = &sched
	}
	if s.Retention.MaxAge != "" {
		d, err := time.ParseDuration(s.Retention.MaxAge)
		if err != nil {
			return Policy{}, fmt.Errorf("backup: BackupPolicy %s: retention.maxAge: %w", name, err)
		}
		p.Retention.MaxAge = d
	}
	switch d := s.Destination; {
	case d.Directory != "":
		p.Destination = Dir(d.Directory)
	case d.S3 != nil:
		s3, err := NewS3(*d.S3, getenv)
		if err != nil {
			return Policy{}, fmt.Errorf("backup: BackupPolicy %s: %w", name, err)
		}
		p.Destination = s3
	default:
		return Policy{}, fmt.Errorf("backup: BackupPolicy %s: no destination", name)
	}
	return p, nil
}
