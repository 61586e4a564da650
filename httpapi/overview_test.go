package httpapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/httpapi"
)

func TestServiceOverviewAndVersions(t *testing.T) {
	ctx := context.Background()
	_, st := newServer(t, "", 3)
	svc := httpapi.NewService(st, httpapi.Config{Gatherer: prometheus.NewRegistry()})

	ov, err := svc.Overview(ctx, apiv1.OverviewQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if ov.Certificates != 3 || ov.Agents != 1 || ov.CertificatesByState["pending"] != 3 ||
		len(ov.Timeline) != apiv1.DefaultTimelineWeeks || ov.OfflineTotal != 1 || ov.Offline[0].Name != "web-01" ||
		ov.ExpiringBefore.Sub(ov.GeneratedAt) != apiv1.DefaultExpiringWithin {
		t.Errorf("overview = %+v", ov)
	}
	if ov.Timeline[0].Week.After(time.Now()) || ov.Timeline[0].Week.Weekday() != time.Monday {
		t.Errorf("the timeline starts %v, want this week's Monday", ov.Timeline[0].Week)
	}
	for _, q := range []apiv1.OverviewQuery{{Limit: -1}, {Limit: apiv1.MaxLimit + 1}, {Weeks: 105}, {Weeks: -2}, {ExpiringWithin: -time.Hour}} {
		if _, err := svc.Overview(ctx, q); failure.KindOf(err) != failure.Invalid {
			t.Errorf("Overview(%+v) = %v, want Invalid", q, err)
		}
	}

	if vs, err := svc.CertificateVersions(ctx, "cert-00", 0); err != nil || len(vs) != 0 || vs == nil {
		t.Errorf("versions of a certificate never issued = %#v, %v", vs, err)
	}
	if _, err := svc.CertificateVersions(ctx, "nope", 0); failure.KindOf(err) != failure.NotFound {
		t.Errorf("versions of an unknown certificate: %v, want NotFound", err)
	}
	if _, err := svc.CertificateVersions(ctx, "cert-00", 101); failure.KindOf(err) != failure.Invalid {
		t.Errorf("101 versions: %v, want Invalid", err)
	}
}
