package agent

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
)

// The agent decides on an error answer's code, as the table of package
// agentproto says; an answer without a known code is read by its status.
func TestIssueAnswerCodes(t *testing.T) {
	const (
		fail    = "fail: reported, retried on the agent's own schedule"
		wait    = "wait: reported, retried after Retry-After, the pass goes on"
		repoll  = "re-poll the assignments"
		trouble = "server trouble: the pass stops"
	)
	for _, tc := range []struct {
		status int
		code   agentproto.Code
		want   string
	}{
		{http.StatusBadRequest, agentproto.CodeInvalid, fail},
		{http.StatusForbidden, agentproto.CodeForbidden, fail},
		{http.StatusNotFound, agentproto.CodeNotFound, fail},
		{http.StatusMethodNotAllowed, agentproto.CodeMethodNotAllowed, fail},
		{http.StatusRequestEntityTooLarge, agentproto.CodeTooLarge, fail},
		{http.StatusUnprocessableEntity, agentproto.CodeRejected, fail},
		{http.StatusUnprocessableEntity, agentproto.CodeCSRMismatch, fail},
		{http.StatusUnprocessableEntity, agentproto.CodeNameNotPermitted, fail},
		{http.StatusConflict, agentproto.CodeConflict, repoll},
		{http.StatusConflict, agentproto.CodeSuspended, repoll},
		{http.StatusTooManyRequests, agentproto.CodeWaiting, repoll}, // no failure: the assignments say until when
		{http.StatusTooManyRequests, agentproto.CodeBackoff, wait},
		{http.StatusServiceUnavailable, agentproto.CodeUnavailable, wait},
		{http.StatusServiceUnavailable, agentproto.CodeIssuerUnavailable, wait},
		{http.StatusUnauthorized, agentproto.CodeUnauthorized, trouble},
		{http.StatusInternalServerError, agentproto.CodeInternal, trouble},
		// Not certops' answers (no known code): read by the status.
		{http.StatusBadRequest, "malformed", fail},
		{http.StatusTeapot, "", fail},
		{http.StatusConflict, "outdated", repoll},
		{http.StatusTooManyRequests, "", wait},
		{http.StatusServiceUnavailable, "", wait},
		{http.StatusUnauthorized, "", trouble},
		{http.StatusBadGateway, "", trouble},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.code), func(t *testing.T) {
			e := newEnv(t)
			e.srv.set(func(s *protoServer) {
				s.issueError = map[string]errAnswer{"shop": {tc.status, tc.code, "600"}}
			})
			a := e.newAgent()
			deployErr, serverErr := a.sync(t.Context())
			now := e.clock.Now()
			st := a.state.get("shop")
			var got string
			switch {
			case serverErr != nil:
				got = trouble
			case deployErr == nil && a.etag == "":
				got = repoll
			case st != nil && st.Failure != nil && st.Failure.RetryAt.Equal(now.Add(600*time.Second)):
				got = wait
			case st != nil && st.Failure != nil && st.Failure.RetryAt.Equal(now.Add(e.cfg.PollInterval)):
				got = fail
			default:
				got = fmt.Sprintf("deployErr %v, serverErr %v, state %+v", deployErr, serverErr, st)
			}
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			reports, _, _, _ := e.srv.snapshot()
			reported := len(reports) == 1 && reports[0].Result == agentproto.ResultFailed && reports[0].Stage == agentproto.StageIssue
			if wantReport := tc.want == fail || tc.want == wait; reported != wantReport {
				t.Errorf("reports %+v, want a failed issue report: %v", reports, wantReport)
			}
		})
	}
}

// A report the server refuses is dropped; one it cannot take now is kept
// for the next pass.
func TestReportAnswerCodes(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   agentproto.Code
		kept   bool
	}{
		{http.StatusBadRequest, agentproto.CodeInvalid, false},
		{http.StatusNotFound, agentproto.CodeNotFound, false},
		{http.StatusRequestEntityTooLarge, agentproto.CodeTooLarge, false},
		{http.StatusServiceUnavailable, agentproto.CodeUnavailable, true},
		{http.StatusInternalServerError, agentproto.CodeInternal, true},
		{http.StatusUnauthorized, agentproto.CodeUnauthorized, true},
	} {
		t.Run(string(tc.code), func(t *testing.T) {
			e := newEnv(t)
			e.srv.set(func(s *protoServer) { s.reportError = &errAnswer{tc.status, tc.code, ""} })
			a := e.newAgent()
			a.report(t.Context(), agentproto.Report{Certificate: "shop", SpecHash: "spec-1", Result: agentproto.ResultFailed})
			if kept := len(a.reports) == 1; kept != tc.kept {
				t.Errorf("report kept: %v, want %v", kept, tc.kept)
			}
		})
	}
}
