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

// checkCron validates a five-field cron expression (minute hour day-of-month
// month day-of-week) with *, numbers, names (jan, mon), ranges a-b, steps
// */n and a-b/n, and comma lists; or one of the macros @yearly, @annually,
// @monthly, @weekly, @daily, @midnight, @hourly.
func checkCron(s string) error {
	if strings.HasPrefix(s, "@") {
		switch s {
		case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly":
			return nil
		}
		return fmt.Errorf("unknown macro %s (want @hourly, @daily, @weekly, @monthly or @yearly)", s)
	}
	parts := strings.Fields(s)
	if len(parts) != len(cronFields) {
		return fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(parts))
	}
	for i, p := range parts {
		f := cronFields[i]
		for item := range strings.SplitSeq(p, ",") {
			if err := f.checkItem(item); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
	}
	return nil
}

func (f cronField) checkItem(item string) error {
	rng, step, hasStep := strings.Cut(item, "/")
	if hasStep {
		n, err := strconv.Atoi(step)
		if err != nil || n < 1 || n > f.max {
			return fmt.Errorf("invalid step %q", step)
		}
	}
	if rng == "*" {
		return nil
	}
	lo, hi, isRange := strings.Cut(rng, "-")
	a, err := f.value(lo)
	if err != nil {
		return err
	}
	if !isRange {
		return nil
	}
	b, err := f.value(hi)
	if err != nil {
		return err
	}
	if a > b {
		return fmt.Errorf("range %s is backwards", rng)
	}
	return nil
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
