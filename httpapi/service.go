package httpapi

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/certops/certops/alert"
	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
	"github.com/certops/certops/store"
)

// Service answers the read API's questions with its wire types: the JSON
// routes and the dashboard both ask it, so they always agree. Errors carry
// failure kinds (NotFound, Invalid); anything else is an Internal failure
// of the store.
type Service struct {
	r            Reader
	alerts       func() []alert.Alert
	offlineAfter time.Duration
	issuers      NameChecker // nil: names are not checked
}

// NewService returns the service reading r, configured by cfg's Alerts,
// AgentOfflineAfter and Issuers.
func NewService(r Reader, cfg Config) *Service {
	s := &Service{r: r, alerts: cfg.Alerts, offlineAfter: cfg.AgentOfflineAfter, issuers: cfg.Issuers}
	if s.offlineAfter <= 0 {
		s.offlineAfter = DefaultAgentOfflineAfter
	}
	return s
}

// Status is the reconciler's status with the alerts firing now.
func (a *Service) Status(ctx context.Context) (apiv1.Status, error) {
	st, err := a.r.Status(ctx)
	if err != nil {
		return apiv1.Status{}, err
	}
	resp := apiv1.Status{
		LastAppliedRevision: st.LastAppliedRevision, LastAppliedAt: st.LastAppliedAt,
		LastAttemptedRevision: st.LastAttemptedRevision, LastAttemptedAt: st.LastAttemptedAt,
		LastFetchAt: st.LastFetchAt, Conditions: st.Conditions, Errors: make([]string, len(st.Errors)),
		Alerts: []alert.Alert{},
	}
	if a.alerts != nil {
		resp.Alerts = append(resp.Alerts, a.alerts()...)
	}
	if resp.Conditions == nil {
		resp.Conditions = unknownConditions()
	}
	for i, e := range st.Errors {
		resp.Errors[i] = e.Error()
	}
	return resp, nil
}

// unknownConditions is the status before the first reconcile.
func unknownConditions() []state.Condition {
	var out []state.Condition
	for _, t := range []state.ConditionType{state.ConditionReady, state.ConditionReconciling, state.ConditionStalled} {
		out = append(out, state.Condition{Type: t, Status: state.Unknown, Reason: "NotReconciled", Message: "no revision attempted yet"})
	}
	return out
}

// Certificates is a page of certificates, each with its compact status
// (one query for the page).
func (a *Service) Certificates(ctx context.Context, q apiv1.ListQuery) (apiv1.CertificateList, error) {
	objs, next, err := a.page(ctx, spec.KindCertificate, q)
	if err != nil {
		return apiv1.CertificateList{}, err
	}
	sums, err := a.r.DeploymentSummaries(ctx, names(objs))
	if err != nil {
		return apiv1.CertificateList{}, err
	}
	out := apiv1.CertificateList{Items: make([]apiv1.CertificateSummary, len(objs)), Next: next}
	for i, o := range objs {
		out.Items[i] = apiv1.CertificateSummary{Object: apiv1.Object(o), Status: apiv1.DeploymentSummary(sums[o.Name])}
	}
	return out, nil
}

// Agents is a page of agents, each with its liveness.
func (a *Service) Agents(ctx context.Context, q apiv1.ListQuery) (apiv1.AgentList, error) {
	objs, next, err := a.page(ctx, spec.KindAgent, q)
	if err != nil {
		return apiv1.AgentList{}, err
	}
	seen, err := a.r.AgentsSeen(ctx, names(objs))
	if err != nil {
		return apiv1.AgentList{}, err
	}
	out := apiv1.AgentList{Items: make([]apiv1.AgentSummary, len(objs)), Next: next}
	for i, o := range objs {
		s := apiv1.AgentSummary{Object: apiv1.Object(o), Status: apiv1.Liveness{State: apiv1.Offline}}
		if v, ok := seen[o.Name]; ok {
			s.Status = apiv1.Liveness{State: a.liveness(v.LastSeen), LastSeen: timePtr(v.LastSeen)}
		}
		out.Items[i] = s
	}
	return out, nil
}

// page reads one page of objects of kind; a limit outside 1..MaxLimit is
// Invalid, 0 means DefaultLimit.
func (a *Service) page(ctx context.Context, kind spec.Kind, q apiv1.ListQuery) ([]store.StoredObject, string, error) {
	if q.Limit == 0 {
		q.Limit = apiv1.DefaultLimit
	}
	if q.Limit < 1 || q.Limit > apiv1.MaxLimit {
		return nil, "", failure.New(failure.Invalid, "limit must be an integer from 1 to "+strconv.Itoa(apiv1.MaxLimit))
	}
	return a.r.ListObjects(ctx, store.ObjectQuery{Kind: kind, Labels: q.Labels, NamePrefix: q.Prefix, After: q.After, Limit: q.Limit})
}

func names(objs []store.StoredObject) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Name
	}
	return out
}

// Certificate is one certificate with its status block: its deployment on
// every agent it targets.
func (a *Service) Certificate(ctx context.Context, name string) (apiv1.Certificate, error) {
	o, err := a.object(ctx, spec.KindCertificate, name)
	if err != nil {
		return apiv1.Certificate{}, err
	}
	st, err := a.certificateStatus(ctx, o)
	return apiv1.Certificate{Object: apiv1.Object(o), Status: st}, err
}

// Agent is one agent with its liveness and assignments.
func (a *Service) Agent(ctx context.Context, name string) (apiv1.Agent, error) {
	o, err := a.object(ctx, spec.KindAgent, name)
	if err != nil {
		return apiv1.Agent{}, err
	}
	st, err := a.agentStatus(ctx, o)
	return apiv1.Agent{Object: apiv1.Object(o), Status: st}, err
}

func (a *Service) object(ctx context.Context, kind spec.Kind, name string) (store.StoredObject, error) {
	o, err := a.r.GetObject(ctx, kind, name)
	if errors.Is(err, store.ErrNotFound) {
		return o, failure.New(failure.NotFound, strings.ToLower(string(kind))+" "+strconv.Quote(name)+" not found")
	}
	return o, err
}

// Revisions is the revision history, newest first: at most limit records
// (DefaultLimit when 0) with ids below before (when not 0).
func (a *Service) Revisions(ctx context.Context, limit int, before int64) (apiv1.RevisionList, error) {
	if limit == 0 {
		limit = apiv1.DefaultLimit
	}
	if limit < 1 || limit > apiv1.MaxLimit {
		return apiv1.RevisionList{}, failure.New(failure.Invalid, "limit must be an integer from 1 to "+strconv.Itoa(apiv1.MaxLimit))
	}
	if before < 0 {
		return apiv1.RevisionList{}, failure.New(failure.Invalid, "before must be a positive revision id")
	}
	revs, err := a.r.ListRevisions(ctx, limit, before)
	if revs == nil {
		revs = []state.RevisionRecord{}
	}
	return apiv1.RevisionList{Items: revs}, err
}
