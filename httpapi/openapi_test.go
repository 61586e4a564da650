package httpapi_test

// The OpenAPI document (apiv1.OpenAPIDocument) is checked with
// github.com/pb33f/libopenapi and github.com/pb33f/libopenapi-validator.
// Why these: the validator checks the document itself against the official
// OpenAPI 3.1 JSON Schema (ValidateDocument), and validates requests and
// responses with a JSON Schema 2020-12 validator, so the 3.1 keywords the
// document relies on (const, propertyNames, unevaluatedProperties over an
// allOf, security alternatives) are enforced rather than ignored. It keeps
// no package-global settings. getkin/kin-openapi v0.153.0 now reads 3.1
// documents too, but its document check is its own structural Validate, not
// the 3.1 meta-schema, and its options (body decoders, string formats) are
// package globals; libopenapi-validator is also already in the module graph
// (through Prometheus, for promtool), so it costs no new dependency tree.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/alert"
	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/assign"
	"github.com/certops/certops/httpapi"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
	"github.com/certops/certops/testkit/storekit"
)

// documentedRoutes returns the routes NewHandler serves (GET, and HEAD with
// it) and the OpenAPI document describes: one list, which the document's
// paths and the handler's registrations must both equal.
func documentedRoutes() []string {
	return []string{
		"/healthz",
		"/readyz",
		"/metrics",
		"/api/v1/status",
		"/api/v1/certificates",
		"/api/v1/certificates/{name}",
		"/api/v1/agents",
		"/api/v1/agents/{name}",
		"/api/v1/revisions",
		"/api/v1/openapi.json",
	}
}

// undocumentedRoutes returns the patterns NewHandler registers that the
// document leaves out on purpose, and why.
func undocumentedRoutes() map[string]string {
	return map[string]string{
		"/":       "the catch-all 404 of paths that are not routes",
		"/hooks/": "the webhook receivers, documented in docs/operator-guide.md#webhooks",
		"/ui/":    "the HTML dashboard, documented in docs/dashboard.md",
		"/{$}":    "the redirect of GET / to the dashboard",
	}
}

// openAPI is the document loaded by libopenapi, with its validator.
type openAPI struct {
	doc   libopenapi.Document
	model *v3.Document
	v     validator.Validator
}

// loadOpenAPI loads apiv1.OpenAPIDocument and builds its validator, which
// checks formats (date-time, int64) too.
func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	doc, err := libopenapi.NewDocument(apiv1.OpenAPIDocument())
	if err != nil {
		t.Fatalf("libopenapi cannot read the document: %v", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("the document does not build as OpenAPI 3 (a $ref that does not resolve?): %v", err)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	return openAPI{doc: doc, model: &m.Model, v: v}
}

func validationErrors(errs []*liberrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n\t" + e.Error())
	}
	return b.String()
}

func TestOpenAPIDocumentIsValidOpenAPI31(t *testing.T) {
	oa := loadOpenAPI(t)
	if got := oa.doc.GetVersion(); got != "3.1.0" {
		t.Errorf("openapi version %q, want 3.1.0", got)
	}
	if ok, errs := oa.v.ValidateDocument(); !ok {
		t.Fatalf("the document does not validate against the OpenAPI 3.1 schema:%s", validationErrors(errs))
	}
	// Every component schema compiles as JSON Schema 2020-12 and is used.
	raw := string(apiv1.OpenAPIDocument())
	for name, proxy := range oa.model.Components.Schemas.FromOldest() {
		if _, err := proxy.BuildSchema(); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
		if !strings.Contains(raw, `"#/components/schemas/`+name+`"`) {
			t.Errorf("schema %s is not referenced", name)
		}
	}
}

// TestOpenAPIDocumentRoutesMatchTheHandler fails when the handler serves a
// route that the document does not describe, or the other way round.
func TestOpenAPIDocumentRoutesMatchTheHandler(t *testing.T) {
	oa := loadOpenAPI(t)
	var documented []string
	for path, item := range oa.model.Paths.PathItems.FromOldest() {
		documented = append(documented, path)
		for method := range item.GetOperations().FromOldest() {
			if method != "get" {
				t.Errorf("%s %s is documented, but the API serves only GET and HEAD", strings.ToUpper(method), path)
			}
		}
	}
	if want := sorted(documentedRoutes()); !slices.Equal(sorted(documented), want) {
		t.Errorf("the document's paths:\n\t%v\nthe routes of this test:\n\t%v", sorted(documented), want)
	}

	// What NewHandler registers, read from the package's source: every
	// get("PATTERN", …) and mux.Handle/HandleFunc("PATTERN", …).
	var registered []string
	for pattern := range registeredPatterns(t) {
		if _, ok := undocumentedRoutes()[pattern]; !ok {
			registered = append(registered, pattern)
		}
	}
	if !slices.Equal(sorted(registered), sorted(documentedRoutes())) {
		t.Errorf("NewHandler registers:\n\t%v\nthe document describes:\n\t%v\n"+
			"describe a new route in apiv1/openapi.json (and copy it to docs/openapi.json), or list it in undocumentedRoutes with the reason",
			sorted(registered), sorted(documentedRoutes()))
	}

	// Every documented route answers: with a name that exists, 200; none
	// is the catch-all 404.
	srv, _ := newServer(t, "", 1)
	for _, route := range documentedRoutes() {
		path := strings.Replace(strings.Replace(route, "/certificates/{name}", "/certificates/cert-00", 1), "/agents/{name}", "/agents/web-01", 1)
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			if code, _ := do(t, method, srv.URL+path, "", nil); code != http.StatusOK {
				t.Errorf("%s %s: %d, want 200", method, path, code)
			}
		}
	}
}

// registeredPatterns returns the route patterns NewHandler registers,
// without their method, read from its source: every get("PATTERN", …) and
// mux.Handle/HandleFunc("PATTERN", …) in its body (not in the closures it
// defines, such as get itself).
func registeredPatterns(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || fn.Name.Name != "NewHandler" {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if _, ok := n.(*ast.FuncLit); ok {
					return false
				}
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 || !registers(call.Fun) {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Errorf("%s: a route registered with a computed pattern; this test can only read literals", fset.Position(call.Pos()))
					return true
				}
				pattern, _ := strconv.Unquote(lit.Value)
				out[strings.TrimPrefix(pattern, "GET ")] = true
				return true
			})
		}
	}
	if len(out) == 0 {
		t.Fatal("found no route registrations in NewHandler")
	}
	return out
}

// registers reports whether fn registers a route: get(…) in NewHandler,
// or a ServeMux's Handle or HandleFunc.
func registers(fn ast.Expr) bool {
	switch fn := fn.(type) {
	case *ast.Ident:
		return fn.Name == "get"
	case *ast.SelectorExpr:
		return fn.Sel.Name == "Handle" || fn.Sel.Name == "HandleFunc"
	}
	return false
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// probe is one request of TestOpenAPILiveResponses.
type probe struct {
	method, path string
	noToken      bool
	status       int
	// route is the documented path the request must match.
	route string
	// invalid: the document itself finds the request invalid (a bad
	// parameter, an undocumented method).
	invalid bool
}

// TestOpenAPILiveResponses calls every route, with answers of every status
// the document lists, over a database whose applied state sets every
// optional field it can, and validates each live response (status, headers,
// content type, body) against the document.
func TestOpenAPILiveResponses(t *testing.T) {
	oa := loadOpenAPI(t)
	st := storekit.Open(t)
	srv := httptest.NewServer(httpapi.NewHandler(st, liveConfig(t, st), slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	empty := httptest.NewServer(httpapi.NewHandler(storekit.Open(t), httpapi.Config{Gatherer: prometheus.NewRegistry()}, slog.New(slog.DiscardHandler)))
	t.Cleanup(empty.Close)

	var p []probe
	get := func(path, route string, status int) {
		p = append(p, probe{method: http.MethodGet, path: path, route: route, status: status})
	}
	get("/healthz", "/healthz", 200)
	get("/readyz", "/readyz", 200)
	get("/metrics", "/metrics", 200)
	get("/api/v1/status", "/api/v1/status", 200)
	get("/api/v1/certificates", "/api/v1/certificates", 200)
	get("/api/v1/certificates?limit=2&prefix=s&label=team=shop", "/api/v1/certificates", 200)
	get("/api/v1/certificates?limit=1&after=api&label=team=shop&label=tier=front", "/api/v1/certificates", 200)
	get("/api/v1/certificates/shop", "/api/v1/certificates/{name}", 200)
	get("/api/v1/certificates/other", "/api/v1/certificates/{name}", 200)
	get("/api/v1/certificates/api", "/api/v1/certificates/{name}", 200)
	get("/api/v1/certificates/pending", "/api/v1/certificates/{name}", 200)
	get("/api/v1/certificates/fleet", "/api/v1/certificates/{name}", 200)
	get("/api/v1/agents", "/api/v1/agents", 200)
	get("/api/v1/agents?limit=1000&prefix=web-&label=role=web", "/api/v1/agents", 200)
	for _, a := range []string{"web-01", "web-02", "db-01"} {
		get("/api/v1/agents/"+a, "/api/v1/agents/{name}", 200)
	}
	get("/api/v1/revisions", "/api/v1/revisions", 200)
	get("/api/v1/revisions?limit=1&before=2", "/api/v1/revisions", 200)
	get("/api/v1/openapi.json", "/api/v1/openapi.json", 200)
	// Errors.
	get("/api/v1/certificates/nope", "/api/v1/certificates/{name}", 404)
	get("/api/v1/agents/shop", "/api/v1/agents/{name}", 404) // a certificate is not an agent
	for _, route := range documentedRoutes() {
		path := strings.ReplaceAll(route, "{name}", "shop")
		// Text no route accepts: a control character in a query value.
		p = append(p, probe{method: http.MethodGet, path: path + "?x=%01", route: route, status: 400})
		if route != "/healthz" && route != "/readyz" {
			p = append(p, probe{method: http.MethodGet, path: path, route: route, status: 401, noToken: true})
		}
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			p = append(p, probe{method: method, path: path, route: route, status: 405, invalid: true})
		}
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=abc", "label=novalue", "label==v"} {
		p = append(p, probe{method: http.MethodGet, path: "/api/v1/certificates?" + bad, route: "/api/v1/certificates", status: 400, invalid: true},
			probe{method: http.MethodGet, path: "/api/v1/agents?" + bad, route: "/api/v1/agents", status: 400, invalid: true})
	}
	for _, bad := range []string{"limit=0", "before=0", "before=-1", "before=abc"} {
		p = append(p, probe{method: http.MethodGet, path: "/api/v1/revisions?" + bad, route: "/api/v1/revisions", status: 400, invalid: true})
	}

	seen := map[string]map[int]bool{} // route → statuses answered
	keys := map[string]bool{}         // every JSON object key answered
	for _, pr := range p {
		checkProbe(t, oa, srv.URL, "t0ken", pr, seen, keys)
	}
	// Before the first reconcile: Unknown conditions, empty lists.
	for _, route := range []string{"/api/v1/status", "/api/v1/certificates", "/api/v1/agents", "/api/v1/revisions"} {
		checkProbe(t, oa, empty.URL, "", probe{method: http.MethodGet, path: route, route: route, status: 200}, seen, keys)
	}

	// 503: the database is gone; while starting, with Retry-After.
	st.Close()
	starting := httptest.NewServer(httpapi.NewHandler(st, httpapi.Config{Gatherer: prometheus.NewRegistry(),
		Ready: func() error { return errors.New("migrating") }}, slog.New(slog.DiscardHandler)))
	t.Cleanup(starting.Close)
	for _, route := range documentedRoutes() {
		path := strings.ReplaceAll(route, "{name}", "shop")
		if !documentsStatus(oa, route, 503) {
			continue
		}
		checkProbe(t, oa, srv.URL, "t0ken", probe{method: http.MethodGet, path: path, route: route, status: 503}, seen, keys)
		checkProbe(t, oa, starting.URL, "", probe{method: http.MethodGet, path: path, route: route, status: 503}, seen, keys)
	}

	// Every status the document lists was answered and validated.
	for path, item := range oa.model.Paths.PathItems.FromOldest() {
		for code := range item.Get.Responses.Codes.FromOldest() {
			n, _ := strconv.Atoi(code)
			if !seen[path][n] {
				t.Errorf("GET %s: no probe answered the documented %s", path, code)
			}
		}
	}
	// Every property of every schema appeared in some answer (by name,
	// anywhere): the state above sets every optional field.
	for name, proxy := range oa.model.Components.Schemas.FromOldest() {
		s := proxy.Schema()
		if s.Properties == nil {
			continue
		}
		for prop := range s.Properties.KeysFromOldest() {
			if !keys[prop] {
				t.Errorf("schema %s: no answer had property %q; make the test's state set it", name, prop)
			}
		}
	}
}

// documentsStatus reports whether GET route lists status among its answers.
func documentsStatus(oa openAPI, route string, status int) bool {
	item, ok := oa.model.Paths.PathItems.Get(route)
	return ok && item.Get.Responses.Codes.GetOrZero(strconv.Itoa(status)) != nil
}

// checkProbe sends pr to base and validates the answer against the
// document: GETs through their operation, other methods against the
// MethodNotAllowed response that every route answers them with.
func checkProbe(t *testing.T, oa openAPI, base, token string, pr probe, seen map[string]map[int]bool, keys map[string]bool) {
	t.Helper()
	name := pr.method + " " + pr.path
	req, err := http.NewRequest(pr.method, base+pr.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" && !pr.noToken {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != pr.status {
		t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, pr.status, body)
		return
	}
	if _, errs, found := paths.FindPath(req, oa.model, config.NewValidationOptions()); found != pr.route {
		t.Errorf("%s: the document matches it to %q, want %q:%s", name, found, pr.route, validationErrors(errs))
	}
	ok, errs := oa.v.ValidateHttpRequest(req)
	if ok && pr.invalid && !labelsMatchPattern(t, oa, req) {
		ok = false // libopenapi-validator v0.16.3 checks no pattern of a query array's items: this test does
	}
	if ok == pr.invalid {
		t.Errorf("%s: the document finds the request valid=%v, want %v:%s", name, ok, !pr.invalid, validationErrors(errs))
	}
	if pr.method == http.MethodGet {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if ok, errs := oa.v.ValidateHttpResponse(req, resp); !ok {
			t.Errorf("%s: the answer does not match the document:%s\n%s", name, validationErrors(errs), body)
		}
		if seen[pr.route] == nil {
			seen[pr.route] = map[int]bool{}
		}
		seen[pr.route][resp.StatusCode] = true
	} else {
		checkMethodNotAllowed(t, oa, name, resp, body)
	}
	// The document itself names every property of the others, so only its
	// own top-level keys count.
	switch {
	case pr.route == "/api/v1/openapi.json" && resp.StatusCode == http.StatusOK:
		var top map[string]json.RawMessage
		if err := json.Unmarshal(body, &top); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		for k := range top {
			keys[k] = true
		}
	case strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"):
		collectKeys(t, name, body, keys)
	}
	if pr.route == "/api/v1/openapi.json" && resp.StatusCode == 200 && !bytes.Equal(body, apiv1.OpenAPIDocument()) {
		t.Errorf("%s: the body is not apiv1.OpenAPIDocument()", name)
	}
}

// labelsMatchPattern reports whether every label parameter of req matches
// the pattern the document gives its items.
func labelsMatchPattern(t *testing.T, oa openAPI, req *http.Request) bool {
	t.Helper()
	p, ok := oa.model.Components.Parameters.Get("Label")
	if !ok {
		t.Fatal("the document has no Label parameter")
	}
	re, err := regexp.Compile(p.Schema.Schema().Items.A.Schema().Pattern)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range req.URL.Query()["label"] {
		if !re.MatchString(l) {
			return false
		}
	}
	return true
}

// checkMethodNotAllowed validates a 405 against the document's
// MethodNotAllowed response: its headers, content type and body.
func checkMethodNotAllowed(t *testing.T, oa openAPI, name string, resp *http.Response, body []byte) {
	t.Helper()
	r, ok := oa.model.Components.Responses.Get("MethodNotAllowed")
	if !ok {
		t.Fatal("the document has no MethodNotAllowed response")
	}
	for h, header := range r.Headers.FromOldest() {
		got, present := resp.Header[http.CanonicalHeaderKey(h)]
		if !present {
			if header.Required {
				t.Errorf("%s: no %s header", name, h)
			}
			continue
		}
		if ok, errs := schema_validation.NewSchemaValidator().ValidateSchemaObject(header.Schema.Schema(), got[0]); !ok {
			t.Errorf("%s: %s %q does not match the document:%s", name, h, got[0], validationErrors(errs))
		}
	}
	var matched bool
	for ctype, media := range r.Content.FromOldest() {
		if resp.Header.Get("Content-Type") != ctype {
			continue
		}
		matched = true
		if ok, errs := schema_validation.NewSchemaValidator().ValidateSchemaBytes(media.Schema.Schema(), body); !ok {
			t.Errorf("%s: the body does not match the MethodNotAllowed response:%s\n%s", name, validationErrors(errs), body)
		}
	}
	if !matched {
		t.Errorf("%s: content type %q is not the MethodNotAllowed response's", name, resp.Header.Get("Content-Type"))
	}
}

// collectKeys adds every object key of the JSON body to keys.
func collectKeys(t *testing.T, name string, body []byte, keys map[string]bool) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				keys[k] = true
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
}

// liveConfig fills st with a state that sets every optional field of the
// API's answers, and returns the handler's configuration: a bearer token
// (t0ken), firing alerts, and issuers that refuse one certificate's names.
//
//   - shop (labels, annotations) is installed on web-01 and failed to issue
//     for web-02 (failures, retryAfter); api rolled back on web-01; other
//     is refused by db-01's host policy and by its issuer; pending
//     (suspended) is issued to web-01 (no report yet) and awaited from
//     db-01 (suspended).
//   - web-01's service serves an older shop than installed (a mismatch),
//     which a Revocation revoked; its check of api failed.
//   - web-01 was just seen (online, version, hostname), web-02 an hour ago
//     (offline), db-01 never.
//   - revision 1 was applied, revision 2 refused as invalid with errors.
func liveConfig(t *testing.T, st *store.Store) httpapi.Config {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	web := &spec.LabelSelector{MatchLabels: map[string]string{"role": "web"}}
	certs := map[string]*spec.CertificateSpec{
		"shop": {IssuerRef: "ca", CommonName: "shop.example.com", DNSNames: []string{"shop.example.com"},
			Deploy: &spec.Deployment{AgentSelector: web, Files: spec.DeployFiles{Cert: "/etc/ssl/shop.pem"}}},
		"api": {IssuerRef: "ca", CommonName: "api.example.com",
			Deploy: &spec.Deployment{Agents: []string{"web-01"}, Files: spec.DeployFiles{Cert: "/etc/ssl/api.pem"}}},
		"other": {IssuerRef: "ca", CommonName: "other.example.org",
			Deploy: &spec.Deployment{Agents: []string{"db-01"}, Files: spec.DeployFiles{Cert: "/etc/ssl/other.pem"}}},
		"pending": {IssuerRef: "ca", CommonName: "pending.example.com",
			Deploy: &spec.Deployment{Agents: []string{"web-01", "db-01"}, Files: spec.DeployFiles{Cert: "/etc/ssl/pending.pem"}}},
		"fleet": {IssuerRef: "le", CommonName: "fleet.example.com", DNSNames: []string{"fleet.example.com"},
			Deploy: &spec.Deployment{AgentSelector: web, Files: spec.DeployFiles{Cert: "/etc/ssl/fleet.pem"}}},
	}
	objs := []*spec.Object{
		{Kind: spec.KindAgent, Name: "web-01", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("a", 64)}},
		{Kind: spec.KindAgent, Name: "web-02", Labels: map[string]string{"role": "web"}, Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("b", 64)}},
		{Kind: spec.KindAgent, Name: "db-01", Spec: &spec.AgentSpec{TokenSHA256: strings.Repeat("c", 64), Suspend: true}},
	}
	certs["pending"].Suspend = true
	for name, c := range certs {
		o := &spec.Object{Kind: spec.KindCertificate, Name: name, Spec: c, Source: spec.Position{File: "certificates/" + name + ".yaml", Line: 3}}
		if name == "shop" || name == "api" {
			o.Labels = map[string]string{"team": "shop", "tier": "front"}
			o.Annotations = map[string]string{"owner": "shop-team@example.com"}
		}
		objs = append(objs, o)
	}
	// The certificate web-01's service still serves (a01d, issued before
	// revision 1) is revoked by it.
	old := state.CertificateVersion{Certificate: "shop", Agent: "web-01", SpecHash: assign.SpecHash(certs["shop"]), Serial: "a01d",
		SHA256: "ee", NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour), CertPEM: "cert", ChainPEM: "chain",
		Issuer: "ca", IssuedAt: now.Add(-80 * 24 * time.Hour)}
	if _, err := st.RecordIssuance(ctx, store.Issuance{Version: old, RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	objs = append(objs, &spec.Object{Kind: spec.KindRevocation, Name: "shop-old", Spec: &spec.RevocationSpec{
		Certificate: "shop", Serials: []string{"A0:1D"}, Reason: "superseded"}})
	// An older one, from an ACME issuer, whose revocation at the CA failed once.
	older := old
	older.Serial, older.Issuer, older.IssuedAt = "a01c", "le", old.IssuedAt.Add(-time.Hour)
	if _, err := st.RecordIssuance(ctx, store.Issuance{Version: older, RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RecordIssuance(ctx, store.Issuance{Version: old, RenewAt: now}); err != nil {
		t.Fatal(err)
	}
	objs = append(objs, &spec.Object{Kind: spec.KindIssuer, Name: "le", Spec: &spec.IssuerSpec{ACME: &spec.ACMEIssuer{
		DirectoryURL: "https://127.0.0.1:1/dir", AccountKeyFile: "/acme.key", Challenge: spec.ACMEChallenge{HTTP01: &spec.HTTP01Challenge{Webroot: "/w"}}}}},
		&spec.Object{Kind: spec.KindRevocation, Name: "shop-acme", Spec: &spec.RevocationSpec{
			Certificate: "shop", Serials: []string{"a01c"}, Reason: "keyCompromise"}})
	rev := state.Revision{Ref: "main", Commit: strings.Repeat("1", 40), Author: "Ada <ada@example.com>", Message: "shop certificates", Time: now.Add(-time.Hour)}
	status := state.Status{LastFetchAt: &now}
	status.MarkApplied(rev, now.Add(-time.Minute))
	storekit.Apply(t, st, rev, status, storekit.Desired(objs...))
	revs, err := st.CertificateRevocations(ctx, "shop")
	if err != nil || len(revs) != 2 {
		t.Fatalf("revocations of shop: %+v, %v", revs, err)
	}
	for _, rv := range revs {
		if rv.ACMEState != "" {
			if err := st.RecordACMERevocation(ctx, rv.ID, "urn:ietf:params:acme:error:serverInternal: try later", now, 3); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Revision 2 is refused.
	bad := state.Revision{Ref: "main", Commit: strings.Repeat("2", 40), Time: now}
	errs := spec.ErrorList{{File: "certificates/shop.yaml", Line: 12, Message: `spec.dnsNames[1]: "bad_name" is not a valid DNS name`},
		{File: "agents.yaml", Message: "duplicate agent web-01"}}
	status.MarkRefused(bad, state.ReasonValidationFailed, "revision "+bad.String()+" has 2 validation error(s)", errs, now)
	lease, ok, err := st.TryLeader(ctx)
	if err != nil || !ok {
		t.Fatalf("TryLeader = %v, %v", ok, err)
	}
	if _, err := st.RecordAttempt(ctx, lease.Fence(), bad, state.OutcomeInvalid, errs, status); err != nil {
		t.Fatal(err)
	}
	lease.Release()

	issue := func(cert, agent string) {
		t.Helper()
		v := state.CertificateVersion{Certificate: cert, Agent: agent, SpecHash: assign.SpecHash(certs[cert]), Serial: "0a" + cert,
			SHA256: "ff", NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), CertPEM: "cert", ChainPEM: "chain", Issuer: "ca", IssuedAt: now}
		if _, err := st.RecordIssuance(ctx, store.Issuance{Version: v, RenewAt: now.Add(60 * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	report := func(cert, agent, serial string, result state.DeploymentState, stage, msg string) {
		t.Helper()
		if _, err := st.RecordReport(ctx, store.DeploymentReport{Certificate: cert, Agent: agent, SpecHash: assign.SpecHash(certs[cert]),
			Serial: serial, Result: result, Stage: stage, Error: msg, At: now}); err != nil {
			t.Fatal(err)
		}
	}
	issue("shop", "web-01")
	report("shop", "web-01", "0ashop", state.DeploymentInstalled, "", "")
	if _, err := st.RecordIssueFailure(ctx, store.IssueFailure{Certificate: "shop", Agent: "web-02", SpecHash: assign.SpecHash(certs["shop"]),
		Error: "CSR does not match: extra DNS name", At: now, Base: time.Minute, Cap: time.Hour}); err != nil {
		t.Fatal(err)
	}
	issue("api", "web-01")
	report("api", "web-01", "0aapi", state.DeploymentRolledBack, "verify", "verify: the service still serves the old certificate")
	report("other", "db-01", "", state.DeploymentFailed, agentproto.StagePolicy,
		agentproto.StagePolicy+": "+agentproto.ReasonHostPolicyRefused+": reload [bash -c x] is not in allowedReloads")
	issue("pending", "web-01")
	// fleet's issuer allows one certificate per name set per week: web-01
	// got it, web-02 waits.
	fleet := state.CertificateVersion{Certificate: "fleet", Agent: "web-01", SpecHash: assign.SpecHash(certs["fleet"]), Serial: "0afleet",
		SHA256: "ff", NotBefore: now, NotAfter: now.Add(90 * 24 * time.Hour), CertPEM: "cert", ChainPEM: "chain", Issuer: "le", IssuedAt: now,
		RenewalWindow: &state.RenewalWindow{Start: now.Add(60 * 24 * time.Hour), End: now.Add(62 * 24 * time.Hour)}}
	if _, err := st.RecordIssuance(ctx, store.Issuance{Version: fleet, RenewAt: now.Add(61 * 24 * time.Hour),
		ACME: &store.ACMEIssuance{NameSet: certs["fleet"].NameSet()}}); err != nil {
		t.Fatal(err)
	}
	if c, err := st.ClaimACMEOrder(ctx, store.ACMEOrder{Certificate: "fleet", Agent: "web-02", SpecHash: assign.SpecHash(certs["fleet"]),
		Holder: "test", StartedAt: now, ExpiresAt: now.Add(10 * time.Minute), Issuer: "le", NameSet: certs["fleet"].NameSet(), Limit: 1}); err != nil || c.Wait == nil {
		t.Fatalf("ClaimACMEOrder = %+v, %v; want a wait", c, err)
	}
	// What the services serve: shop on web-01 an older certificate than
	// the one installed (a mismatch), api's check failed.
	if _, err := st.RecordServed(ctx, "web-01", []store.ServedCheck{
		{Certificate: "shop", Serial: "a01d", NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour), CheckedAt: now},
		{Certificate: "api", Error: "dial tcp 127.0.0.1:443: connection refused", CheckedAt: now},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordAgentsSeen(ctx, []store.AgentSeen{{Name: "web-01", LastSeen: time.Now(), Version: "0.3.0", Hostname: "web-01.lan"},
		{Name: "web-02", LastSeen: time.Now().Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}

	firing := []alert.Alert{
		{Name: alert.CertificateExpiringSoon, Severity: alert.Critical, Subject: "shop", Summary: "Certificate shop expires soon",
			Description: "It expires in 3 days.", Labels: map[string]string{"certificate": "shop"}, Since: now.Add(-time.Hour)},
		{Name: alert.ReconcileStalled, Severity: alert.Warning, Summary: "Reconcile stalled", Description: "Revision 2 is invalid.", Since: now},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "certops_test_total", Help: "test"}))
	return httpapi.Config{BearerToken: "t0ken", Gatherer: reg, Alerts: func() []alert.Alert { return firing },
		Issuers: refuseNames{"other.example.org"}}
}

// TestOpenAPIValidatorCatchesDrift shows the live checks have teeth: an
// answer with a field the document does not list, without a required one,
// with a value outside an enum, a time that is not one, or an undocumented
// status or content type fails validation.
func TestOpenAPIValidatorCatchesDrift(t *testing.T) {
	oa := loadOpenAPI(t)
	const agent = `{"kind": "Agent", "name": "web-01", "spec": {}, "hash": "h", "generation": 1,
		"createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
		"status": {"state": "online", "assignments": [], "policyRefusals": []%s}%s}`
	answer := func(status int, ctype, body string) *http.Response {
		return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {ctype}, "Cache-Control": {"no-store"}},
			Body: io.NopCloser(strings.NewReader(body))}
	}
	req := httptest.NewRequest(http.MethodGet, "/api/v1/agents/web-01", nil)
	if ok, errs := oa.v.ValidateHttpResponse(req, answer(200, "application/json", fmt.Sprintf(agent, "", ""))); !ok {
		t.Fatalf("a valid agent is refused:%s", validationErrors(errs))
	}
	for name, resp := range map[string]*http.Response{
		"an undocumented field of the object": answer(200, "application/json", fmt.Sprintf(agent, "", `, "extra": 1`)),
		"an undocumented field of the status": answer(200, "application/json", fmt.Sprintf(agent, `, "extra": 1`, "")),
		"a liveness not in the enum":          answer(200, "application/json", strings.Replace(fmt.Sprintf(agent, "", ""), "online", "asleep", 1)),
		"a time that is not one":              answer(200, "application/json", fmt.Sprintf(agent, `, "lastSeen": "yesterday"`, "")),
		"a kind of another route":             answer(200, "application/json", strings.Replace(fmt.Sprintf(agent, "", ""), `"Agent"`, `"Certificate"`, 1)),
		"a required field missing":            answer(200, "application/json", strings.Replace(fmt.Sprintf(agent, "", ""), `"hash": "h",`, "", 1)),
		"an undocumented status":              answer(418, "application/json", `{"error": {"code": "invalid", "message": "x"}}`),
		"an undocumented content type":        answer(200, "text/html", "<p>web-01</p>"),
		"an error code not in agentproto":     answer(404, "application/json", `{"error": {"code": "gone", "message": "x"}}`),
	} {
		if ok, _ := oa.v.ValidateHttpResponse(req, resp); ok {
			t.Errorf("%s: validation passed, want it to fail", name)
		}
	}
}
