package dashboard

import (
	"fmt"
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/certops/certops/apiv1"
)

// pageNames are the page templates; each is parsed with the layout.
var pageNames = []string{"overview", "certificates", "certificate", "agents", "agent", "revisions", "login", "error"}

// parsePages parses every page with the layout; the templates are
// embedded, so an error is a build error.
func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"iso":        isoTime,
		"human":      humanTime,
		"rel":        relTime,
		"short":      shortText,
		"labels":     sortedKeys[string],
		"pathEscape": url.PathEscape,
		"lower":      strings.ToLower,
		"plural":     plural,
		"more":       func(total, shown int) int { return total - shown },
		"at":         func(now time.Time, t any) moment { return moment{Now: now, T: t} },
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		pages[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return pages
}

// moment is a time to show relative to Now (the "when" template).
type moment struct {
	Now time.Time
	T   any
}

// timeOf is t (a time.Time or *time.Time) and whether it is set.
func timeOf(t any) (time.Time, bool) {
	switch v := t.(type) {
	case time.Time:
		return v, !v.IsZero()
	case *time.Time:
		if v == nil {
			return time.Time{}, false
		}
		return *v, !v.IsZero()
	}
	return time.Time{}, false
}

func isoTime(t any) string {
	v, ok := timeOf(t)
	if !ok {
		return ""
	}
	return v.UTC().Format(time.RFC3339)
}

func humanTime(t any) string {
	v, ok := timeOf(t)
	if !ok {
		return "—"
	}
	return v.UTC().Format("2006-01-02 15:04 UTC")
}

// relTime says how far t is from now: "in 3d 4h", "5m ago".
func relTime(now time.Time, t any) string {
	v, ok := timeOf(t)
	if !ok {
		return ""
	}
	d := v.Sub(now)
	if d >= 0 {
		return "in " + roughDuration(d)
	}
	return roughDuration(-d) + " ago"
}

// roughDuration is d in its two largest units.
func roughDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%dd %dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

func shortText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// chart is the expiry timeline as an SVG bar chart, laid out here so the
// template only draws it.
type chart struct {
	Width, Height, Base int
	Bars                []bar
	Max                 int
	Total               int
}

type bar struct {
	X, Y, W, H int
	LabelX     int
	Count      int
	Week       string // "Jan 02"
	Title      string
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 720
	chartHeight = 180
	chartTop    = 18 // room for the counts above the bars
	chartBottom = 22 // room for the week labels
)

func timelineChart(weeks []apiv1.WeekCount) chart {
	c := chart{Width: chartWidth, Height: chartHeight, Base: chartHeight - chartBottom}
	for _, w := range weeks {
		c.Max = max(c.Max, w.Count)
		c.Total += w.Count
	}
	if len(weeks) == 0 {
		return c
	}
	slot := chartWidth / len(weeks)
	room := c.Base - chartTop
	for i, w := range weeks {
		h := 0
		if c.Max > 0 {
			h = w.Count * room / c.Max
		}
		if w.Count > 0 && h < 2 {
			h = 2
		}
		x := i*slot + slot/8
		c.Bars = append(c.Bars, bar{X: x, Y: c.Base - h, W: slot * 3 / 4, H: h, LabelX: i*slot + slot/2, Count: w.Count,
			Week:  w.Week.UTC().Format("Jan 02"),
			Title: fmt.Sprintf("%d %s ending in the week of %s", w.Count, plural(w.Count, "certificate", "certificates"), w.Week.UTC().Format("2006-01-02"))})
	}
	return c
}
