package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/certops/certops/httpapi"
)

// textFamilies is a MetricsText writing fixed text, or failing.
type textFamilies struct {
	text string
	err  error
}

func (f textFamilies) WriteMetricsText(w io.Writer) error {
	if f.err != nil {
		return f.err
	}
	_, err := io.WriteString(w, f.text)
	return err
}

const certificateText = `# HELP certops_certificate_ready 1 when ready.
# TYPE certops_certificate_ready gauge
certops_certificate_ready{certificate="a\"b\\c\nd"} 1
certops_certificate_ready{certificate="shop"} 0
`

// metricsServer serves the API with a registry of two families and the
// text above, behind token; logs go to the returned buffer.
func metricsServer(t *testing.T, token string, g prometheus.Gatherer, text httpapi.MetricsText) (*httptest.Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	srv := httptest.NewServer(httpapi.NewHandler(nil, httpapi.Config{BearerToken: token, Gatherer: g, MetricsText: text},
		slog.New(slog.NewTextHandler(&logs, nil))))
	t.Cleanup(srv.Close)
	return srv, &logs
}

func testRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certops_test_total", Help: "Test counter."}, []string{"result"})
	c.WithLabelValues("success").Add(3)
	reg.MustRegister(c, prometheus.NewGauge(prometheus.GaugeOpts{Name: "certops_test_gauge", Help: "Test gauge."}))
	return reg
}

// scrapeWith GETs /metrics with the token and the request headers kv
// (name, value, …), without the client's own gzip handling.
func scrapeWith(t *testing.T, url, token string, kv ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// /metrics is the registry's families in the text format 0.0.4 followed
// by the MetricsText's, one HELP and TYPE per family, parseable by
// expfmt, whatever format the scraper prefers; the bearer token is
// required as before.
func TestMetricsJoinsRegistryAndText(t *testing.T) {
	reg := testRegistry()
	srv, _ := metricsServer(t, "s3cret", reg, textFamilies{text: certificateText})

	if resp, _ := scrapeWith(t, srv.URL, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := scrapeWith(t, srv.URL, "wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("with a wrong token: %d, want 401", resp.StatusCode)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&want, mf); err != nil {
			t.Fatal(err)
		}
	}
	want.WriteString(certificateText)

	for _, accept := range []string{
		"",
		"text/plain;version=0.0.4",
		"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3",
	} {
		resp, body := scrapeWith(t, srv.URL, "s3cret", "Accept", accept)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Accept %q: %d %s", accept, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
			t.Errorf("Accept %q: Content-Type %q", accept, ct)
		}
		if resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("Accept %q: Content-Encoding %q without Accept-Encoding", accept, resp.Header.Get("Content-Encoding"))
		}
		if !bytes.Equal(body, want.Bytes()) {
			t.Errorf("Accept %q: body\n%s\nwant\n%s", accept, body, want.Bytes())
		}
	}

	_, body := scrapeWith(t, srv.URL, "s3cret")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	parsed, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	for _, name := range []string{"certops_test_total", "certops_test_gauge", "certops_certificate_ready"} {
		if parsed[name] == nil {
			t.Errorf("family %s missing", name)
		}
		for _, kind := range []string{"HELP", "TYPE"} {
			if n := len(regexp.MustCompile(`(?m)^# `+kind+` `+name+` `).FindAll(body, -1)); n != 1 {
				t.Errorf("%s: %d %s lines, want 1", name, n, kind)
			}
		}
	}
	got := map[string]float64{}
	for _, m := range parsed["certops_certificate_ready"].GetMetric() {
		got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	if len(got) != 2 || got["a\"b\\c\nd"] != 1 || got["shop"] != 0 {
		t.Errorf("certops_certificate_ready parsed as %v", got)
	}
	if v := parsed["certops_test_total"].GetMetric()[0].GetCounter().GetValue(); v != 3 {
		t.Errorf("certops_test_total = %v, want 3", v)
	}
}

// A client accepting gzip gets the same page gzipped; one refusing it
// (q=0) or preferring identity gets it plain.
func TestMetricsGzip(t *testing.T) {
	srv, _ := metricsServer(t, "", testRegistry(), textFamilies{text: certificateText})
	_, plain := scrapeWith(t, srv.URL, "")
	resp, body := scrapeWith(t, srv.URL, "", "Accept-Encoding", "gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Accept-Encoding gzip: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unzipped, plain) || !strings.HasSuffix(string(plain), certificateText) {
		t.Errorf("gzipped page differs from the plain one:\n%s\nplain:\n%s", unzipped, plain)
	}
	for _, ae := range []string{"gzip;q=0", "identity, gzip;q=0.5", "br"} {
		resp, body := scrapeWith(t, srv.URL, "", "Accept-Encoding", ae)
		if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, plain) {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, body equal %v; want the plain page", ae,
				resp.Header.Get("Content-Encoding"), bytes.Equal(body, plain))
		}
	}
}

// A failed Gather answers 500 with the error and logs it, as promhttp
// did; a failed MetricsText is logged and the page ends after the
// registry's families.
func TestMetricsErrors(t *testing.T) {
	failing := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		return nil, errors.New("collector exploded")
	})
	srv, logs := metricsServer(t, "", failing, textFamilies{text: certificateText})
	resp, body := scrapeWith(t, srv.URL, "")
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "collector exploded") {
		t.Errorf("failing gatherer: %d %s, want 500 with the error", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "error gathering metrics: collector exploded") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("log %q lacks the gather error at WARN", logs)
	}

	srv, logs = metricsServer(t, "", testRegistry(), textFamilies{err: errors.New("text unavailable")})
	resp, body = scrapeWith(t, srv.URL, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "certops_test_total") || strings.Contains(string(body), "certops_certificate_ready") {
		t.Errorf("failing text: %d %s, want 200 with the registry's families only", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), "text unavailable") {
		t.Errorf("log %q lacks the text error", logs)
	}
}
