package backup

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// timeLayout is the UTC timestamp in backup names: 20261126T120000Z.
const timeLayout = "20060102T150405Z"

// nameRE matches the names ObjectName makes; nothing else is ever pruned.
var nameRE = regexp.MustCompile(`^certops-([A-Za-z0-9._-]+)-([0-9]{8}T[0-9]{6}Z)\.dump$`)

// ObjectName is the name of a backup of database db taken at t:
// certops-<db>-20261126T120000Z.dump (characters of db other than letters,
// digits, '.', '_' and '-' become '_').
func ObjectName(db string, t time.Time) string {
	return "certops-" + safeName(db) + "-" + t.UTC().Format(timeLayout) + ".dump"
}

func safeName(db string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '.' || r == '_' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, db)
}

// Stored is a backup found at a destination.
type Stored struct {
	Name     string
	Database string // as it appears in the name
	Time     time.Time
	Size     int64
}

// ParseName parses a name made by ObjectName; ok is false for any other name.
func ParseName(name string) (s Stored, ok bool) {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return Stored{}, false
	}
	t, err := time.Parse(timeLayout, m[2])
	if err != nil {
		return Stored{}, false
	}
	return Stored{Name: name, Database: m[1], Time: t}, true
}

// DatabaseName is the database a connection string points at, as it
// appears in backup names.
func DatabaseName(databaseURL string) (string, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return "", fmt.Errorf("backup: parse database URL: %w", err)
	}
	if cfg.Database == "" {
		return "", fmt.Errorf("backup: the database URL names no database")
	}
	return safeName(cfg.Database), nil
}

// Retention is how many backups to keep and for how long. Zero fields do
// not limit; the newest backup is always kept.
type Retention struct {
	Count  int
	MaxAge time.Duration
}

// Expired returns the backups of list that r does not keep at time now,
// newest first: those beyond the Count newest and those older than MaxAge,
// but never the newest one.
func (r Retention) Expired(list []Stored, now time.Time) []Stored {
	sorted := slices.Clone(list)
	slices.SortFunc(sorted, func(a, b Stored) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	var expired []Stored
	for i, s := range sorted {
		if i == 0 {
			continue
		}
		tooMany := r.Count > 0 && i >= r.Count
		tooOld := r.MaxAge > 0 && now.Sub(s.Time) > r.MaxAge
		if tooMany || tooOld {
			expired = append(expired, s)
		}
	}
	return expired
}
