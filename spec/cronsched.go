package spec

import (
	"fmt"
	"strconv"
	"strings"
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

// cronMacros are the @ shorthands and their five-field equivalents.
var cronMacros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// ParseSchedule parses a five-field cron expression or macro, as accepted in
// a BackupPolicy's schedule.
func ParseSchedule(s string) (Schedule, error) {
	if err := checkCron(s); err != nil {
		return Schedule{}, fmt.Errorf("cron schedule %q: %w", s, err)
	}
	if m, ok := cronMacros[s]; ok {
		s = m
	}
	parts := strings.Fields(s)
	var sets [5]uint64
	for i, p := range parts {
		for item := range strings.SplitSeq(p, ",") {
			bits, err := cronFields[i].bits(item)
			if err != nil { // checkCron accepted it; this cannot happen
				return Schedule{}, fmt.Errorf("cron schedule %q: %s: %w", s, cronFields[i].name, err)
			}
			sets[i] |= bits
		}
	}
	// Day of week 7 is Sunday, like 0.
	if sets[4]&(1<<7) != 0 {
		sets[4] |= 1
	}
	return Schedule{
		minute: sets[0], hour: sets[1], dom: sets[2], month: sets[3], dow: sets[4],
		domStar: strings.HasPrefix(parts[2], "*"), dowStar: strings.HasPrefix(parts[4], "*"),
	}, nil
}

// bits is the set of values one comma-separated item of the field allows.
func (f cronField) bits(item string) (uint64, error) {
	rng, stepStr, hasStep := strings.Cut(item, "/")
	step := 1
	if hasStep {
		n, err := strconv.Atoi(stepStr)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("invalid step %q", stepStr)
		}
		step = n
	}
	lo, hi := f.min, f.max
	if rng != "*" {
		a, b, isRange := strings.Cut(rng, "-")
		var err error
		if lo, err = f.value(a); err != nil {
			return 0, err
		}
		hi = lo
		if isRange {
			if hi, err = f.value(b); err != nil {
				return 0, err
			}
		} else if hasStep {
			hi = f.max // "5/15" means 5-max/15, as in Vixie cron
		}
	}
	var set uint64
	for v := lo; v <= hi; v += step {
		set |= 1 << v
	}
	return set, nil
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
