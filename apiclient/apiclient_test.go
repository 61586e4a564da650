package apiclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/certops/certops/apiclient"
	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/state"
	"github.com/certops/certops/testkit"
)

// pagedServer serves n agents (agent-00, agent-01, …) two per page and n
// revisions (ids n..1) three per page, as the read API pages them, and
// checks the bearer token.
func pagedServer(t *testing.T, n int, token string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/agents", func(w http.ResponseWriter, r *http.Request) {
		after := r.URL.Query().Get("after")
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		var page apiv1.AgentList
		for i := range n {
			name := fmt.Sprintf("agent-%02d", i)
			if name > after && len(page.Items) < min(limit, 2) && r.URL.Query().Get("label") == "role=web" {
				page.Items = append(page.Items, apiv1.AgentSummary{Object: apiv1.Object{Name: name}})
			}
		}
		if len(page.Items) == 2 && page.Items[1].Name != fmt.Sprintf("agent-%02d", n-1) {
			page.Next = page.Items[1].Name
		}
		_ = json.NewEncoder(w).Encode(page)
	})
	mux.HandleFunc("GET /api/v1/revisions", func(w http.ResponseWriter, r *http.Request) {
		before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
		if before == 0 {
			before = int64(n) + 1
		}
		page := apiv1.RevisionList{Items: []state.RevisionRecord{}}
		for id := before - 1; id >= 1 && len(page.Items) < 3; id-- {
			page.Items = append(page.Items, state.RevisionRecord{ID: id})
		}
		_ = json.NewEncoder(w).Encode(page)
	})
	mux.HandleFunc("/api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("not json"))
	})
	mux.HandleFunc("/proxy/api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte("<html>bad gateway</html>"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		failure.WriteHTTP(w, failure.New(failure.NotFound, `certificate "nope" not found`))
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			failure.WriteHTTP(w, failure.New(failure.Unauthorized, "missing or invalid bearer token"))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, server, token string) *apiclient.Client {
	t.Helper()
	c, err := apiclient.New(apiclient.Config{Server: server, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPaging(t *testing.T) {
	srv := pagedServer(t, 7, "tok")
	c := newClient(t, srv.URL, "tok")
	ctx := context.Background()
	agents, err := c.AllAgents(ctx, apiv1.ListQuery{Labels: map[string]string{"role": "web"}}, 0)
	if err != nil || len(agents) != 7 || agents[6].Name != "agent-06" {
		t.Fatalf("AllAgents: %d %v", len(agents), err)
	}
	if agents, err = c.AllAgents(ctx, apiv1.ListQuery{Labels: map[string]string{"role": "web"}}, 3); err != nil || len(agents) != 3 {
		t.Errorf("AllAgents max 3: %d %v", len(agents), err)
	}
	revs, err := c.AllRevisions(ctx, 0)
	if err != nil || len(revs.Items) != 7 || revs.Items[0].ID != 7 || revs.Items[6].ID != 1 {
		t.Errorf("AllRevisions: %+v %v", revs.Items, err)
	}
	if revs, err = c.AllRevisions(ctx, 4); err != nil || len(revs.Items) != 4 {
		t.Errorf("AllRevisions max 4: %d %v", len(revs.Items), err)
	}
}

// TestErrors: every answer that is not a success becomes an error of the
// failure kind it means.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	srv := pagedServer(t, 1, "tok")
	if _, err := newClient(t, srv.URL, "wrong").Status(ctx); failure.KindOf(err) != failure.Unauthorized {
		t.Errorf("wrong token: %v (%v)", err, failure.KindOf(err))
	}
	_, err := newClient(t, srv.URL, "tok").Certificate(ctx, "nope")
	if failure.KindOf(err) != failure.NotFound || err.Error() != `certificate "nope" not found` {
		t.Errorf("not found: %v (%v)", err, failure.KindOf(err))
	}
	if _, err := newClient(t, srv.URL, "tok").Status(ctx); failure.KindOf(err) != failure.Internal || !strings.Contains(err.Error(), "not what certops sends") {
		t.Errorf("not JSON: %v", err)
	}
	if _, err := newClient(t, srv.URL+"/proxy/", "tok").Status(ctx); failure.KindOf(err) != failure.Unavailable {
		t.Errorf("a proxy's 502: %v (%v)", err, failure.KindOf(err))
	}
	closed := "http://" + testkit.ClosedAddr(t)
	_, err = newClient(t, closed, "").Status(ctx)
	var unreachable *apiclient.UnreachableError
	if !errors.As(err, &unreachable) || failure.KindOf(err) != failure.Unavailable || err.Error() != "cannot reach "+closed+": connection refused" {
		t.Errorf("unreachable: %v", err)
	}
	for _, bad := range []string{"", "ftp://x", "127.0.0.1:8080", "http://"} {
		if _, err := apiclient.New(apiclient.Config{Server: bad}); failure.KindOf(err) != failure.Invalid {
			t.Errorf("server %q: %v", bad, err)
		}
	}
	if _, err := apiclient.New(apiclient.Config{Server: "https://x", CAFile: "/nonexistent"}); failure.KindOf(err) != failure.Invalid {
		t.Errorf("missing CA file: %v", err)
	}
}
