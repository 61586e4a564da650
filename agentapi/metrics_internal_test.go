package agentapi

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/certops/certops/assign"
)

// constCollector is how the StateCollector exported the per-certificate
// families before they were rendered as text: one const metric per
// certificate and family, gathered and encoded by client_golang.
type constCollector struct {
	states []CertificateState
	descs  []*prometheus.Desc
}

func newConstCollector(states []CertificateState) *constCollector {
	c := &constCollector{states: states}
	for _, f := range certificateFamilies {
		c.descs = append(c.descs, prometheus.NewDesc(f.name, f.help, []string{"certificate"}, nil))
	}
	return c
}

func (c *constCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *constCollector) Collect(ch chan<- prometheus.Metric) {
	for i := range c.states {
		for j, f := range certificateFamilies {
			if v, ok := f.value(&c.states[i]); ok {
				ch <- prometheus.MustNewConstMetric(c.descs[j], prometheus.GaugeValue, v, c.states[i].Name)
			}
		}
	}
}

// fixtureStates are n certificates with every combination of the values
// (ready or not, with or without expiry, not-before, renewal), names
// holding what the text format escapes (quote, backslash, new line) and
// UTF-8, in no particular order.
func fixtureStates(n int) []CertificateState {
	base := time.Date(2026, 12, 5, 10, 0, 0, 123456789, time.UTC)
	names := []string{`plain`, `quo"te`, `back\slash`, "new\nline", `both\"\n`, "ünï-çødé", `trailing\`}
	states := make([]CertificateState, 0, n)
	for i := range n {
		var r assign.Readiness
		if i%2 == 0 {
			r.Expiration = base.Add(time.Duration(i) * time.Hour)
			r.Ready = i%4 == 0
		}
		if i%3 == 0 {
			r.NotBefore = base.Add(-time.Duration(i) * time.Minute)
		}
		if i%5 != 0 {
			r.Renewal = base.Add(time.Duration(i) * time.Second)
		}
		states = append(states, CertificateState{Name: fmt.Sprintf("%s-%05d", names[(i*7919)%len(names)], (n-i)*31%n), Readiness: r})
	}
	return states
}

// The text is what the const metrics gave, byte for byte: the same
// families, HELP and TYPE once each, series sorted by certificate, values
// formatted and label values escaped by expfmt — across chunk
// boundaries (more series than textChunk).
func TestCertificateTextEqualsConstMetrics(t *testing.T) {
	for _, n := range []int{1, 7, textChunk, 3*textChunk + 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			states := fixtureStates(n)
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(newConstCollector(states))
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var want bytes.Buffer
			enc := expfmt.NewEncoder(&want, expfmt.FmtText)
			for _, mf := range mfs {
				if err := enc.Encode(mf); err != nil {
					t.Fatal(err)
				}
			}
			got := certificateText(append([]CertificateState(nil), states...))
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("text differs from the const metrics' encoding\n--- got\n%.2000s\n--- want\n%.2000s", got, want.Bytes())
			}
			for _, f := range certificateFamilies {
				if c := bytes.Count(got, []byte("# HELP "+f.name+" ")); c > 1 {
					t.Errorf("%s: %d HELP lines", f.name, c)
				}
				if c := bytes.Count(got, []byte("# TYPE "+f.name+" gauge\n")); c > 1 {
					t.Errorf("%s: %d TYPE lines", f.name, c)
				}
			}
		})
	}
}

// A label value with a quote, a backslash or a new line is escaped as the
// text format requires (\" \\ \n) and parses back to the name.
func TestCertificateTextEscapesLabelValues(t *testing.T) {
	names := []string{`quo"te`, `back\slash`, "new\nline", `all\"` + "\n" + `\`}
	var states []CertificateState
	for _, n := range names {
		states = append(states, CertificateState{Name: n})
	}
	text := certificateText(states)
	for _, want := range []string{
		`certops_certificate_ready{certificate="quo\"te"} 0`,
		`certops_certificate_ready{certificate="back\\slash"} 0`,
		`certops_certificate_ready{certificate="new\nline"} 0`,
		`certops_certificate_ready{certificate="all\\\"\n\\"} 0`,
	} {
		if !strings.Contains(string(text), want+"\n") {
			t.Errorf("text lacks %s:\n%s", want, text)
		}
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	got := map[string]bool{}
	for _, m := range mfs["certops_certificate_ready"].GetMetric() {
		got[m.GetLabel()[0].GetValue()] = true
	}
	for _, n := range names {
		if !got[n] {
			t.Errorf("certificate %q not parsed back (got %v)", n, got)
		}
	}
	if len(mfs) != 1 {
		t.Errorf("families %d, want only ready: the others have no value", len(mfs))
	}
}

// The per-certificate families of 50,000 issued certificates (about
// 200,000 series): rendered as text once (what a snapshot change costs
// now), and gathered and encoded as const metrics (what every scrape cost
// before).
func BenchmarkCertificateFamilies(b *testing.B) {
	const n = 50000
	base := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	states := make([]CertificateState, n)
	for i := range states {
		states[i] = CertificateState{Name: fmt.Sprintf("team-%03d-cert-%05d", i%500, i), Readiness: assign.Readiness{Ready: true,
			Expiration: base.Add(time.Duration(i) * time.Minute), NotBefore: base.Add(-time.Hour), Renewal: base.Add(time.Duration(i) * time.Second)}}
	}
	b.Run("text", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.SetBytes(int64(len(certificateText(states))))
		}
	})
	b.Run("const-metrics", func(b *testing.B) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(newConstCollector(states))
		b.ReportAllocs()
		var out bytes.Buffer
		for b.Loop() {
			mfs, err := reg.Gather()
			if err != nil {
				b.Fatal(err)
			}
			out.Reset()
			enc := expfmt.NewEncoder(&out, expfmt.FmtText)
			for _, mf := range mfs {
				if err := enc.Encode(mf); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(out.Len()))
		}
	})
}
