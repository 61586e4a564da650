package httpapi

import (
	"cmp"
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

// OverviewReader is what Overview and CertificateVersions read;
// *store.Store implements it.
type OverviewReader interface {
	Overview(ctx context.Context, q store.OverviewQuery) (store.Overview, error)
	CertificateVersions(ctx context.Context, certificate string, limit int) ([]state.CertificateVersion, error)
}

// Overview is the fleet in aggregate (see apiv1.Overview); agents count
// as offline after Config.AgentOfflineAfter, like everywhere else. Bounds
// outside 1..MaxLimit (limit), 1..104 (weeks) or a negative window are
// Invalid.
func (a *Service) Overview(ctx context.Context, q apiv1.OverviewQuery) (apiv1.Overview, error) {
	q.ExpiringWithin = cmp.Or(q.ExpiringWithin, apiv1.DefaultExpiringWithin)
	q.Weeks = cmp.Or(q.Weeks, apiv1.DefaultTimelineWeeks)
	q.Limit = cmp.Or(q.Limit, apiv1.DefaultOverviewLimit)
	switch {
	case q.ExpiringWithin < 0:
		return apiv1.Overview{}, failure.New(failure.Invalid, "the expiry window must not be negative")
	case q.Weeks < 1 || q.Weeks > 104:
		return apiv1.Overview{}, failure.New(failure.Invalid, "the timeline must be from 1 to 104 weeks")
	case q.Limit < 1 || q.Limit > apiv1.MaxLimit:
		return apiv1.Overview{}, failure.New(failure.Invalid, "limit must be an integer from 1 to "+strconv.Itoa(apiv1.MaxLimit))
	}
	now := time.Now()
	ov, err := a.r.Overview(ctx, store.OverviewQuery{Now: now, ExpiringBefore: now.Add(q.ExpiringWithin),
		OfflineBefore: now.Add(-a.offlineAfter), Weeks: q.Weeks, Limit: q.Limit})
	if err != nil {
		return apiv1.Overview{}, err
	}
	out := apiv1.Overview{GeneratedAt: now, Certificates: ov.Certificates, Agents: ov.Agents,
		CertificatesByState: ov.CertificatesByState, ExpiringBefore: now.Add(q.ExpiringWithin),
		Expiring: make([]apiv1.ExpiringDeployment, len(ov.Expiring)), ExpiringTotal: ov.ExpiringTotal,
		Failing: make([]apiv1.FailingDeployment, len(ov.Failing)), FailingTotal: ov.FailingTotal,
		Offline: make([]apiv1.OfflineAgent, len(ov.Offline)), OfflineTotal: ov.OfflineTotal,
		Timeline: make([]apiv1.WeekCount, len(ov.Timeline))}
	for i, e := range ov.Expiring {
		out.Expiring[i] = apiv1.ExpiringDeployment(e)
	}
	for i, f := range ov.Failing {
		out.Failing[i] = apiv1.FailingDeployment(f)
	}
	for i, o := range ov.Offline {
		out.Offline[i] = apiv1.OfflineAgent(o)
	}
	for i, w := range ov.Timeline {
		out.Timeline[i] = apiv1.WeekCount(w)
	}
	return out, nil
}

// CertificateVersions lists the newest versions issued for the named
// certificate, newest first: at most limit (DefaultVersions when 0, up to
// store.MaxVersionsPage). An unknown certificate is NotFound.
func (a *Service) CertificateVersions(ctx context.Context, name string, limit int) ([]apiv1.CertificateVersion, error) {
	limit = cmp.Or(limit, DefaultVersions)
	if limit < 1 || limit > store.MaxVersionsPage {
		return nil, failure.New(failure.Invalid, "limit must be an integer from 1 to "+strconv.Itoa(store.MaxVersionsPage))
	}
	if _, err := a.object(ctx, spec.KindCertificate, name); err != nil {
		return nil, err
	}
	vs, err := a.r.CertificateVersions(ctx, name, limit)
	if err != nil {
		return nil, err
	}
	out := make([]apiv1.CertificateVersion, len(vs))
	for i, v := range vs {
		out[i] = apiv1.CertificateVersion{ID: v.ID, Agent: v.Agent, SpecHash: v.SpecHash, Serial: v.Serial, SHA256: v.SHA256,
			NotBefore: v.NotBefore, NotAfter: v.NotAfter, Issuer: v.Issuer, IssuedAt: v.IssuedAt,
			RenewalWindow: v.RenewalWindow, ARIRenewal: v.ARIRenewal}
	}
	return out, nil
}

// DefaultVersions is CertificateVersions' default limit.
const DefaultVersions = 10
