package httpapi

import (
	"compress/gzip"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// MetricsText writes metric families in the Prometheus text format 0.0.4,
// none of which the Gatherer has. *agentapi.StateCollector implements it:
// its per-certificate series, rendered once per snapshot change instead
// of built as client_golang metrics at every scrape.
type MetricsText interface {
	WriteMetricsText(w io.Writer) error
}

// metricsHandler serves /metrics: the families g gathers, encoded in the
// text format 0.0.4, then what text writes (nil: nothing). It answers
// with the text format whatever the Accept header asks (a scraper that
// prefers OpenMetrics or protobuf falls back to it, as Prometheus does),
// gzipped when the client accepts gzip. As promhttp.HandlerFor did, a
// failed Gather is logged on errorLog and answered 500, and a failed
// write is logged and ends the response.
func metricsHandler(g prometheus.Gatherer, text MetricsText, errorLog *log.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mfs, err := g.Gather()
		if err != nil {
			errorLog.Println("error gathering metrics:", err)
			http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Add("Vary", "Accept")
		h.Add("Vary", "Accept-Encoding")
		h.Set("Content-Type", string(expfmt.FmtText))
		var out io.Writer = w
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			defer gz.Close()
			out = gz
		}
		enc := expfmt.NewEncoder(out, expfmt.FmtText)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				errorLog.Println("error encoding and sending metric family:", err)
				return
			}
		}
		if text == nil {
			return
		}
		if err := text.WriteMetricsText(out); err != nil {
			errorLog.Println("error sending metric families:", err)
		}
	}
}

// acceptsGzip says whether Accept-Encoding values ask for gzip: listed
// with a quality above 0 and above that of identity when that is listed
// too.
func acceptsGzip(values []string) bool {
	gzipQ, identityQ := -1.0, -1.0
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			q := 1.0
			if name, value, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(name) == "q" {
				if f, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
					q = f
				}
			}
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "gzip":
				gzipQ = q
			case "identity":
				identityQ = q
			}
		}
	}
	return gzipQ > 0 && gzipQ > identityQ
}
