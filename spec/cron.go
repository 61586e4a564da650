package spec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// cronField is the range and optional names of one cron field.
type cronField struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}

// cronFields are the five fields of a cron schedule, in order.
var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 7, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
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

// checkCron validates a five-field cron expression (minute hour day-of-month
// month day-of-week) with *, numbers, names (jan, mon), ranges a-b, steps
// */n and a-b/n, and comma lists; or one of the macros @yearly, @annually,
// @monthly, @weekly, @daily, @midnight, @hourly.
func checkCron(s string) error {
	_, err := parseCron(s)
	return err
}

// parseCron parses what checkCron accepts into a Schedule.
func parseCron(s string) (Schedule, error) {
	if strings.HasPrefix(s, "@") {
		m, ok := cronMacros[s]
		if !ok {
			return Schedule{}, fmt.Errorf("unknown macro %s (want @hourly, @daily, @weekly, @monthly or @yearly)", s)
		}
		s = m
	}
	parts := strings.Fields(s)
	if len(parts) != len(cronFields) {
		return Schedule{}, fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(parts))
	}
	var sets [5]uint64
	for i, p := range parts {
		f := cronFields[i]
		for item := range strings.SplitSeq(p, ",") {
			bits, err := f.bits(item)
			if err != nil {
				return Schedule{}, fmt.Errorf("%s: %w", f.name, err)
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
		if err != nil || n < 1 || n > f.max {
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
		switch {
		case isRange:
			if hi, err = f.value(b); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("range %s is backwards", rng)
			}
		case hasStep:
			hi = f.max // "5/15" means 5-max/15, as in Vixie cron
		}
	}
	var set uint64
	for v := lo; v <= hi; v += step {
		set |= 1 << v
	}
	return set, nil
}

func (f cronField) value(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty value")
	}
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("%d is out of range %d-%d", n, f.min, f.max)
	}
	return n, nil
}
