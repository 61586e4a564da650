package spec_test

import (
	"testing"
	"time"

	"github.com/certops/certops/spec"
)

func TestScheduleNext(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		schedule, after, want string
	}{
		{"30 2 * * *", "2026-11-26T02:29:59Z", "2026-11-26T02:30:00Z"},
		{"30 2 * * *", "2026-11-26T02:30:00Z", "2026-11-27T02:30:00Z"}, // strictly after
		{"*/15 * * * *", "2026-11-26T10:07:00Z", "2026-11-26T10:15:00Z"},
		{"0 */6 * * *", "2026-11-26T19:00:00Z", "2026-11-27T00:00:00Z"},
		{"0 0 1 * *", "2026-12-15T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"0 3 * * mon-fri", "2026-11-27T04:00:00Z", "2026-11-30T03:00:00Z"}, // Friday → Monday
		{"0 0 * * 7", "2026-11-26T00:00:00Z", "2026-11-29T00:00:00Z"},       // 7 is Sunday
		{"0 0 13 * fri", "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z"},    // either day field matches
		{"0 0 29 feb *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
		{"5/20 1,2 * jan-mar *", "2026-11-26T00:00:00Z", "2027-01-01T01:05:00Z"},
		{"@weekly", "2026-11-26T00:00:00Z", "2026-11-29T00:00:00Z"},
		{"@hourly", "2026-11-26T10:00:30Z", "2026-11-26T11:00:00Z"},
		{"30 2 * * *", "2026-11-26T05:30:00+03:00", "2026-11-27T02:30:00Z"}, // compared in UTC
	}
	for _, tt := range tests {
		s, err := spec.ParseSchedule(tt.schedule)
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", tt.schedule, err)
			continue
		}
		got, ok := s.Next(at(tt.after))
		if !ok || !got.Equal(at(tt.want)) {
			t.Errorf("%q.Next(%s) = %v, %v; want %s", tt.schedule, tt.after, got, ok, tt.want)
		}
	}
	never, err := spec.ParseSchedule("0 0 30 2 *")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := never.Next(at("2026-01-01T00:00:00Z")); ok {
		t.Errorf("Feb 30 fires at %v", got)
	}
	if _, err := spec.ParseSchedule("61 * * * *"); err == nil {
		t.Error("ParseSchedule accepted minute 61")
	}
}
