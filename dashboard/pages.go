package dashboard

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/state"
)

// stateOrder is the order in which states are shown: the ones that need
// attention first.
var stateOrder = []state.DeploymentState{state.DeploymentFailed, state.DeploymentRolledBack, state.DeploymentIssueFailed,
	state.DeploymentIssued, state.DeploymentPending, state.DeploymentInstalled}

type stateCount struct {
	State state.DeploymentState
	Count int
}

type overviewPage struct {
	Status   apiv1.Status
	Overview apiv1.Overview
	ByState  []stateCount
	Chart    chart
}

func (d *dashboard) overview(w http.ResponseWriter, r *http.Request) {
	st, err := d.src.Status(r.Context())
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	ov, err := d.src.Overview(r.Context(), apiv1.OverviewQuery{})
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	p := overviewPage{Status: st, Overview: ov, Chart: timelineChart(ov.Timeline)}
	for _, s := range stateOrder {
		p.ByState = append(p.ByState, stateCount{State: s, Count: ov.CertificatesByState[s]})
	}
	d.render(w, http.StatusOK, "overview", view{Title: "Overview", Nav: "overview", Now: ov.GeneratedAt, Page: p})
}

// listForm is the search form of a list page, as the query had it.
type listForm struct {
	Prefix string
	Labels string // "k=v k2=v2"
	After  string
}

// parseListForm reads prefix, labels ("k=v", separated by spaces or
// commas) and after.
func parseListForm(q url.Values) (listForm, apiv1.ListQuery, error) {
	f := listForm{Prefix: strings.TrimSpace(q.Get("prefix")), Labels: strings.TrimSpace(q.Get("labels")), After: q.Get("after")}
	lq := apiv1.ListQuery{Limit: PageSize, Prefix: f.Prefix, After: f.After, Labels: map[string]string{}}
	for _, l := range strings.FieldsFunc(f.Labels, func(r rune) bool { return r == ',' || r == ' ' }) {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return f, lq, failure.New(failure.Invalid, "a label filter is key=value, got "+strconv.Quote(l))
		}
		lq.Labels[k] = v
	}
	return f, lq, nil
}

// pageURL is the list at path with the form's filters, starting after
// after ("" for the first page).
func (f listForm) pageURL(path, after string) string {
	q := url.Values{}
	if f.Prefix != "" {
		q.Set("prefix", f.Prefix)
	}
	if f.Labels != "" {
		q.Set("labels", f.Labels)
	}
	if after != "" {
		q.Set("after", after)
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

type certificateRow struct {
	apiv1.CertificateSummary
	CommonName string
	Issuer     string
	States     []stateCount
}

type listPage[T any] struct {
	Form     listForm
	Items    []T
	NextURL  string
	FirstURL string // set when this is not the first page
}

func (d *dashboard) certificates(w http.ResponseWriter, r *http.Request) {
	form, q, err := parseListForm(r.URL.Query())
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	list, err := d.src.Certificates(r.Context(), q)
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	p := listPage[certificateRow]{Form: form}
	for _, c := range list.Items {
		row := certificateRow{CertificateSummary: c}
		var s struct{ CommonName, IssuerRef string }
		if json.Unmarshal(c.Spec, &s) == nil {
			row.CommonName, row.Issuer = s.CommonName, s.IssuerRef
		}
		row.States = countsInOrder(c.Status.States)
		p.Items = append(p.Items, row)
	}
	d.paginate(&p.NextURL, &p.FirstURL, form, "/ui/certificates", list.Next)
	d.render(w, http.StatusOK, "certificates", view{Title: "Certificates", Nav: "certificates", Page: p})
}

func (d *dashboard) paginate(next, first *string, form listForm, path, after string) {
	if after != "" {
		*next = form.pageURL(path, after)
	}
	if form.After != "" {
		*first = form.pageURL(path, "")
	}
}

func countsInOrder(m map[string]int) []stateCount {
	var out []stateCount
	for _, s := range stateOrder {
		if n := m[string(s)]; n > 0 {
			out = append(out, stateCount{State: s, Count: n})
		}
	}
	return out
}

type certificatePage struct {
	Cert     apiv1.Certificate
	Spec     certificateSpec
	SpecJSON string
	Versions []apiv1.CertificateVersion
}

// certificateSpec is what the page shows of a certificate's spec.
type certificateSpec struct {
	IssuerRef   string   `json:"issuerRef"`
	CommonName  string   `json:"commonName"`
	DNSNames    []string `json:"dnsNames"`
	IPAddresses []string `json:"ipAddresses"`
	Duration    string   `json:"duration"`
	RenewBefore string   `json:"renewBefore"`
	Suspend     bool     `json:"suspend"`
}

func (d *dashboard) certificate(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c, err := d.src.Certificate(r.Context(), name)
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	vs, err := d.src.CertificateVersions(r.Context(), name, 0)
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	p := certificatePage{Cert: c, Versions: vs}
	_ = json.Unmarshal(c.Spec, &p.Spec) // shown as far as it decodes; the JSON below is whole
	p.SpecJSON = indentJSON(c.Spec)
	d.render(w, http.StatusOK, "certificate", view{Title: c.Name, Nav: "certificates", Page: p})
}

func indentJSON(raw json.RawMessage) string {
	var buf strings.Builder
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if enc.Encode(v) != nil {
		return string(raw)
	}
	return buf.String()
}

func (d *dashboard) agents(w http.ResponseWriter, r *http.Request) {
	form, q, err := parseListForm(r.URL.Query())
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	list, err := d.src.Agents(r.Context(), q)
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	p := listPage[apiv1.AgentSummary]{Form: form, Items: list.Items}
	d.paginate(&p.NextURL, &p.FirstURL, form, "/ui/agents", list.Next)
	d.render(w, http.StatusOK, "agents", view{Title: "Agents", Nav: "agents", Page: p})
}

// maxAssignmentsShown bounds the assignments listed on an agent's page.
const maxAssignmentsShown = 500

type agentPage struct {
	Agent       apiv1.Agent
	Assignments []string
	More        int
}

func (d *dashboard) agent(w http.ResponseWriter, r *http.Request) {
	a, err := d.src.Agent(r.Context(), r.PathValue("name"))
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	p := agentPage{Agent: a, Assignments: a.Status.Assignments}
	if n := len(p.Assignments); n > maxAssignmentsShown {
		p.Assignments, p.More = p.Assignments[:maxAssignmentsShown], n-maxAssignmentsShown
	}
	d.render(w, http.StatusOK, "agent", view{Title: a.Name, Nav: "agents", Page: p})
}

// revisionsPerPage is the number of revisions a page shows.
const revisionsPerPage = 20

type revisionsPage struct {
	Items     []state.RevisionRecord
	OlderURL  string
	NewestURL string
}

func (d *dashboard) revisions(w http.ResponseWriter, r *http.Request) {
	var before int64
	if s := r.URL.Query().Get("before"); s != "" {
		var err error
		if before, err = strconv.ParseInt(s, 10, 64); err != nil || before <= 0 {
			d.errorPage(w, r, failure.New(failure.Invalid, "before must be a positive revision id"))
			return
		}
	}
	list, err := d.src.Revisions(r.Context(), revisionsPerPage, before)
	if err != nil {
		d.errorPage(w, r, err)
		return
	}
	p := revisionsPage{Items: list.Items}
	if n := len(list.Items); n == revisionsPerPage && list.Items[n-1].ID > 1 {
		p.OlderURL = "/ui/revisions?before=" + strconv.FormatInt(list.Items[n-1].ID, 10)
	}
	if before != 0 {
		p.NewestURL = "/ui/revisions"
	}
	d.render(w, http.StatusOK, "revisions", view{Title: "Revisions", Nav: "revisions", Page: p})
}

// sortedKeys returns m's keys in order, for stable label chips.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
