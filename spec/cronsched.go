package spec

import (
	"fmt"
	"time"
)

// Schedule is a parsed cron schedule (see checkCron for the syntax),
// evaluated in UTC.
type Schedule struct {
	// minute..weekday hold one bit per allowed value.
	minute, hour, dom, month, dow uint64
	// domStar and dowStar record an unrestricted ("*") day of month or day
	// of week: as in Vixie cron, when both are restricted a day matching
	// either one fires.
	domStar, dowStar bool
}

// ParseSchedule parses a five-field cron expression or macro, as accepted in
// a BackupPolicy's schedule.
func ParseSchedule(s string) (Schedule, error) {
	sched, err := parseCron(s)
	if err != nil {
		return Schedule{}, fmt.Errorf("cron schedule %q: %w", s, err)
	}
	return sched, nil
}

// Next is the first time strictly after t (in whole minutes, UTC) at which
// the schedule fires, and false when it never fires within the next five
// years (such as "0 0 30 2 *").
func (s Schedule) Next(t time.Time) (time.Time, bool) {
	t = t.UTC().Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(5, 0, 0)
	for t.Before(limit) {
		switch {
		case s.month&(1<<int(t.Month())) == 0:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !s.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		case s.hour&(1<<t.Hour()) == 0:
			t = t.Truncate(time.Hour).Add(time.Hour)
		case s.minute&(1<<t.Minute()) == 0:
			t = t.Add(time.Minute)
		default:
			return t, true
		}
	}
	return time.Time{}, false
}

// dayMatches applies the day-of-month and day-of-week fields to t's date.
func (s Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<t.Day()) != 0
	dow := s.dow&(1<<int(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}
