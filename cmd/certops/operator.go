package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certops/certops/apiclient"
	"github.com/certops/certops/apiv1"
	"github.com/certops/certops/failure"
	"github.com/certops/certops/secret"
	"github.com/certops/certops/spec"
	"github.com/certops/certops/state"
)

// defaultServer is where the operator commands look for the reconciler
// without --server or CERTOPS_SERVER.
const defaultServer = "https://127.0.0.1:8080"

// clientFlags are the flags of every command that talks to the read API.
type clientFlags struct {
	server, tokenFile, caFile string
}

func (c *clientFlags) declare(f *flagSet) {
	f.StringEnv(&c.server, "server", defaultServer, "base URL of the reconciler's API")
	f.StringEnv(&c.tokenFile, "token-file", "", "file holding the API's bearer token (serve --api-token-file)")
	f.StringEnv(&c.caFile, "ca-file", "", "PEM CA bundle trusted for the server's TLS certificate (default: system roots)")
}

// client builds the API client; its errors are bad usage (a bad flag).
func (c *clientFlags) client() (*apiclient.Client, error) {
	var token string
	if c.tokenFile != "" {
		var err error
		if token, err = secret.ReadFile(c.tokenFile); err != nil {
			return nil, failure.Wrap(failure.Usage, fmt.Errorf("--token-file: %w", err))
		}
	}
	cl, err := apiclient.New(apiclient.Config{Server: c.server, Token: token, CAFile: c.caFile, UserAgent: "certops/" + version})
	if err != nil {
		return nil, failure.Wrap(failure.Usage, fmt.Errorf("--server/--ca-file: %w", err))
	}
	return cl, nil
}

// explain turns the client's errors into the one line an operator acts on:
// what to set when the token is refused or the server's certificate is not
// trusted.
func (c *clientFlags) explain(err error) error {
	var unknownCA x509.UnknownAuthorityError
	switch {
	case failure.KindOf(err) == failure.Unauthorized && c.tokenFile == "":
		return failure.New(failure.Unauthorized, "the server refused the token: set --token-file (or CERTOPS_TOKEN_FILE) to the API's token")
	case failure.KindOf(err) == failure.Unauthorized:
		return failure.New(failure.Unauthorized, "the server refused the token in "+c.tokenFile+": set --token-file to the API's token (serve --api-token-file)")
	case errors.As(err, &unknownCA):
		return failure.Wrap(failure.Unavailable, fmt.Errorf("%w (set --ca-file to the CA of the server's certificate)", err))
	}
	return err
}

// parseInterspersed parses args with flags before, between and after the
// positional arguments (certops get certificates -o wide), and returns
// the positional ones.
func parseInterspersed(f *flagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.parse(args); err != nil {
			return nil, err
		}
		if f.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, f.Arg(0))
		args = f.Args()[1:]
	}
}

// usageError prints msg and the command's usage, and is bad usage.
func usageError(f *flagSet, msg string) int {
	fmt.Fprintln(f.env.stderr, "certops:", msg)
	f.Usage()
	return failure.ExitCode(errUsage)
}

// labelFlag is -l key=value, repeatable.
type labelFlag map[string]string

func (l labelFlag) String() string { return "" }

func (l labelFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	l[k] = val
	return nil
}

// statusCmd: certops status [-o table|json|yaml] — the reconciler's status.
func statusCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "status")
	var cf clientFlags
	cf.declare(f)
	output := f.String("o", outTable, "output: table, json or yaml")
	f.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: certops status [-o table|json|yaml] [--server URL] [--token-file F] [--ca-file F]\n\nflags:")
		f.PrintDefaults()
	}
	if err := f.parseNoArgs(args); err != nil {
		return parseExit(err)
	}
	fail := func(err error) int { return env.fail("certops status", cf.explain(err)) }
	if err := checkOutput(*output, outTable, outJSON, outYAML); err != nil {
		return fail(err)
	}
	cl, err := cf.client()
	if err != nil {
		return fail(err)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		return fail(err)
	}
	t := newTerminal(env)
	if *output != outTable {
		return exitOf(fail, printValue(env.stdout, *output, st))
	}
	printStatus(t, st)
	return 0
}

func exitOf(fail func(error) int, err error) int {
	if err != nil {
		return fail(err)
	}
	return 0
}

// printStatus writes the status as an operator reads it: the revisions,
// the conditions, the errors of the last attempt and the firing alerts.
func printStatus(t terminal, st apiv1.Status) {
	fmt.Fprintf(t.w, "Applied revision:    %s\n", orDash(st.LastAppliedRevision))
	fmt.Fprintf(t.w, "Applied at:          %s\n", t.when(st.LastAppliedAt))
	fmt.Fprintf(t.w, "Attempted revision:  %s\n", orDash(st.LastAttemptedRevision))
	fmt.Fprintf(t.w, "Attempted at:        %s\n", t.when(st.LastAttemptedAt))
	fmt.Fprintf(t.w, "Last fetch:          %s\n", t.when(st.LastFetchAt))
	fmt.Fprintln(t.w)
	tb := table{header: []string{"CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"}, states: []int{1},
		stateOf: func(row int, _ string) string { return conditionState(st.Conditions[row]) }}
	for _, c := range st.Conditions {
		tb.rows = append(tb.rows, []string{string(c.Type), string(c.Status), string(c.Reason), t.ago(&c.LastTransitionTime), oneLine(c.Message)})
	}
	t.print(tb)
	if len(st.Errors) > 0 {
		fmt.Fprintf(t.w, "\nErrors of the attempted revision (%d):\n", len(st.Errors))
		for _, e := range st.Errors {
			fmt.Fprintln(t.w, "  "+e)
		}
	}
	if len(st.Alerts) > 0 {
		fmt.Fprintln(t.w, "\nFiring alerts:")
		at := table{header: []string{"ALERT", "SEVERITY", "SUBJECT", "SINCE", "SUMMARY"}, states: []int{1}}
		for _, a := range st.Alerts {
			since := a.Since
			at.rows = append(at.rows, []string{a.Name, string(a.Severity), a.Subject, t.ago(&since), a.Summary})
		}
		t.print(at)
	}
}

// conditionState is the colour word of a condition: Ready True is good
// news, Reconciling True a retry in progress, Stalled True or Ready False
// trouble.
func conditionState(c state.Condition) string {
	switch {
	case c.Status == state.Unknown:
		return "Unknown"
	case c.Type == state.ConditionReady:
		return string(c.Status)
	case c.Status == state.True && c.Type == state.ConditionStalled:
		return "Stalled"
	case c.Status == state.True:
		return "Reconciling"
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// kindOf is the kind `certops get` and `describe` mean by word: its
// plural, singular or short name.
func kindOf(word string) (string, bool) {
	switch word {
	case "certificates", "certificate", "certs", "cert":
		return "certificates", true
	case "agents", "agent":
		return "agents", true
	case "revisions", "revision", "revs":
		return "revisions", true
	}
	return "", false
}

// getCmd: certops get certificates|agents|revisions [-l k=v] [-o FORMAT]
// [--limit N] — every item, through all pages.
func getCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "get")
	var cf clientFlags
	cf.declare(f)
	labels := labelFlag{}
	f.Var(labels, "l", "label filter key=value (repeatable; all must match)")
	output := f.String("o", outTable, "output: table, wide, json or yaml")
	limit := f.Int("limit", 0, "print at most this many items (default: all, through every page)")
	f.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: certops get certificates|agents|revisions [-l key=value]... [-o table|wide|json|yaml] [--limit N]\n\nflags:")
		f.PrintDefaults()
	}
	pos, err := parseInterspersed(f, args)
	if err != nil {
		return parseExit(err)
	}
	if len(pos) != 1 {
		return usageError(f, "get takes one kind: certificates, agents or revisions")
	}
	kind, ok := kindOf(pos[0])
	if !ok {
		return usageError(f, fmt.Sprintf("unknown kind %q: want certificates, agents or revisions", pos[0]))
	}
	fail := func(err error) int { return env.fail("certops get", cf.explain(err)) }
	if err := checkOutput(*output, outTable, outWide, outJSON, outYAML); err != nil {
		return fail(err)
	}
	if *limit < 0 {
		return fail(failure.New(failure.Usage, "--limit must not be negative"))
	}
	if kind == "revisions" && len(labels) > 0 {
		return fail(failure.New(failure.Usage, "-l: revisions have no labels"))
	}
	cl, err := cf.client()
	if err != nil {
		return fail(err)
	}
	t := newTerminal(env)
	q := apiv1.ListQuery{Labels: labels}
	var value any
	var tb table
	switch kind {
	case "certificates":
		items, err := cl.AllCertificates(ctx, q, *limit)
		if err != nil {
			return fail(err)
		}
		value, tb = apiv1.CertificateList{Items: items}, certificateTable(t, items, *output == outWide)
	case "agents":
		items, err := cl.AllAgents(ctx, q, *limit)
		if err != nil {
			return fail(err)
		}
		value, tb = apiv1.AgentList{Items: items}, agentTable(t, items, *output == outWide)
	case "revisions":
		list, err := cl.AllRevisions(ctx, *limit)
		if err != nil {
			return fail(err)
		}
		value, tb = list, revisionTable(t, list.Items, *output == outWide)
	}
	if *output == outJSON || *output == outYAML {
		return exitOf(fail, printValue(env.stdout, *output, value))
	}
	if len(tb.rows) == 0 {
		fmt.Fprintf(env.stderr, "no %s found\n", kind)
		return 0
	}
	t.print(tb)
	return 0
}

// certSpec decodes the parts of a certificate's spec the tables show; a
// spec it cannot read shows empty cells.
func certSpec(raw json.RawMessage) spec.CertificateSpec {
	var s spec.CertificateSpec
	_ = json.Unmarshal(raw, &s)
	return s
}

// deploymentState sums up a certificate's deployment states: the one
// state when all agree, else "failed" or "pending" with the counts.
func deploymentState(s apiv1.DeploymentSummary) string {
	switch {
	case s.Deployments == 0:
		return "-"
	case len(s.States) == 1:
		for k := range s.States {
			return k
		}
	}
	for _, bad := range []string{"issue-failed", "failed", "rolled-back"} {
		if s.States[bad] > 0 {
			return bad
		}
	}
	return "pending"
}

func statesText(s map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s)) {
		parts = append(parts, k+":"+strconv.Itoa(s[k]))
	}
	return strings.Join(parts, " ")
}

func labelsText(l map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

func certificateTable(t terminal, items []apiv1.CertificateSummary, wide bool) table {
	tb := table{header: []string{"NAME", "STATE", "INSTALLED", "EXPIRES", "ISSUER", "DNS NAMES"}, states: []int{1}}
	if wide {
		tb.header = append(tb.header, "STATES", "LABELS", "SOURCE", "GENERATION", "UPDATED")
	}
	for _, c := range items {
		s := certSpec(c.Spec)
		row := []string{c.Name, deploymentState(c.Status),
			fmt.Sprintf("%d/%d", c.Status.States["installed"], c.Status.Deployments),
			t.ago(c.Status.EarliestNotAfter), s.IssuerRef, strings.Join(s.DNSNames, ",")}
		if wide {
			updated := c.UpdatedAt
			row = append(row, statesText(c.Status.States), labelsText(c.Labels), source(c.Object),
				strconv.FormatInt(c.Generation, 10), t.ago(&updated))
		}
		tb.rows = append(tb.rows, row)
	}
	return tb
}

func agentTable(t terminal, items []apiv1.AgentSummary, wide bool) table {
	tb := table{header: []string{"NAME", "STATE", "LAST SEEN", "LABELS"}, states: []int{1}}
	if wide {
		tb.header = append(tb.header, "SOURCE", "GENERATION", "UPDATED")
	}
	for _, a := range items {
		row := []string{a.Name, a.Status.State, orDash(t.ago(a.Status.LastSeen)), labelsText(a.Labels)}
		if wide {
			updated := a.UpdatedAt
			row = append(row, source(a.Object), strconv.FormatInt(a.Generation, 10), t.ago(&updated))
		}
		tb.rows = append(tb.rows, row)
	}
	return tb
}

func revisionTable(t terminal, items []state.RevisionRecord, wide bool) table {
	tb := table{header: []string{"ID", "OUTCOME", "REVISION", "AUTHOR", "PROCESSED", "CHANGES"}, states: []int{1}}
	if wide {
		tb.header = append(tb.header, "ERRORS", "MESSAGE")
	}
	for _, r := range items {
		var c, u, d int
		for _, n := range r.Counts {
			c, u, d = c+n.Create, u+n.Update, d+n.Delete
		}
		at := r.AppliedAt
		row := []string{strconv.FormatInt(r.ID, 10), string(r.Outcome), shortRevision(r.Revision), r.Revision.Author,
			t.ago(&at), fmt.Sprintf("+%d ~%d -%d", c, u, d)}
		if wide {
			msg, _, _ := strings.Cut(r.Revision.Message, "\n")
			row = append(row, strconv.Itoa(len(r.Errors)), msg)
		}
		tb.rows = append(tb.rows, row)
	}
	return tb
}

// shortRevision is BRANCH@12 hex digits of the commit.
func shortRevision(r state.Revision) string {
	commit := r.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	return r.Ref + "@" + commit
}

func source(o apiv1.Object) string {
	if o.SourceFile == "" {
		return ""
	}
	return o.SourceFile + ":" + strconv.Itoa(o.SourceLine)
}

// describeCmd: certops describe certificate|agent NAME [-o FORMAT] — one
// object with its status, in one screen.
func describeCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "describe")
	var cf clientFlags
	cf.declare(f)
	output := f.String("o", outTable, "output: table (a description), json or yaml")
	f.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: certops describe certificate|agent NAME [-o table|json|yaml]\n\nflags:")
		f.PrintDefaults()
	}
	pos, err := parseInterspersed(f, args)
	if err != nil {
		return parseExit(err)
	}
	if len(pos) != 2 {
		return usageError(f, "describe takes a kind (certificate or agent) and a NAME")
	}
	kind, ok := kindOf(pos[0])
	if !ok || kind == "revisions" {
		return usageError(f, fmt.Sprintf("unknown kind %q: want certificate or agent", pos[0]))
	}
	fail := func(err error) int { return env.fail("certops describe", cf.explain(err)) }
	if err := checkOutput(*output, outTable, outJSON, outYAML); err != nil {
		return fail(err)
	}
	cl, err := cf.client()
	if err != nil {
		return fail(err)
	}
	t := newTerminal(env)
	name := pos[1]
	var value any
	if kind == "certificates" {
		value, err = cl.Certificate(ctx, name)
	} else {
		value, err = cl.Agent(ctx, name)
	}
	if err != nil {
		return fail(err)
	}
	if *output != outTable {
		return exitOf(fail, printValue(env.stdout, *output, value))
	}
	// The recent revisions that changed it, from the newest page of history.
	var history []state.RevisionRecord
	if revs, err := cl.Revisions(ctx, apiv1.MaxLimit, 0); err == nil {
		history = revs.Items
	}
	switch v := value.(type) {
	case apiv1.Certificate:
		describeCertificate(t, v, touching(history, spec.KindCertificate, name))
	case apiv1.Agent:
		describeAgent(ctx, t, cl, v, touching(history, spec.KindAgent, name))
	}
	return 0
}

// touching are the revisions (newest first, at most five) with an action
// on the object kind/name.
func touching(history []state.RevisionRecord, kind spec.Kind, name string) []revisionAction {
	var out []revisionAction
	for _, r := range history {
		for _, a := range r.Actions {
			if a.Kind == kind && a.Name == name {
				out = append(out, revisionAction{r, a.Action})
				break
			}
		}
		if len(out) == 5 {
			break
		}
	}
	return out
}

type revisionAction struct {
	rec    state.RevisionRecord
	action state.Action
}

// field prints one "Name:  value" line of a description.
func field(t terminal, name, value string) {
	fmt.Fprintf(t.w, "%-15s %s\n", name+":", value)
}

func describeObject(t terminal, o apiv1.Object) {
	field(t, "Name", o.Name)
	field(t, "Kind", string(o.Kind))
	field(t, "Labels", orDash(labelsText(o.Labels)))
	field(t, "Source", fmt.Sprintf("%s (generation %d, revision %d, updated %s)", orDash(source(o)), o.Generation, o.RevisionID, t.ago(&o.UpdatedAt)))
}

func describeCertificate(t terminal, c apiv1.Certificate, revs []revisionAction) {
	s := certSpec(c.Spec)
	describeObject(t, c.Object)
	field(t, "Issuer", s.IssuerRef)
	field(t, "Common name", orDash(s.CommonName))
	field(t, "DNS names", orDash(strings.Join(s.DNSNames, ", ")))
	if len(s.IPAddresses) > 0 {
		field(t, "IP addresses", strings.Join(s.IPAddresses, ", "))
	}
	key := s.PrivateKey.Algorithm
	if s.PrivateKey.Size > 0 {
		key += " " + strconv.Itoa(s.PrivateKey.Size)
	}
	field(t, "Key", orDash(strings.TrimSpace(key)))
	field(t, "Duration", orDash(s.Duration))
	if st := c.Status; st != nil {
		ready := t.paintAs("not ready", "not ready")
		if st.Ready {
			ready = t.paintAs("ready", "ready")
		}
		if st.Reason != "" {
			ready += ": " + st.Reason
		}
		field(t, "Status", ready)
		if st.IssuerError != "" {
			field(t, "Issuer error", st.IssuerError)
		}
		field(t, "Serial", orDash(currentSerials(st.Deployments)))
		field(t, "Expires", t.when(st.NotAfter))
		field(t, "Renews at", t.when(st.RenewAt))
		fmt.Fprintln(t.w)
		if len(st.Deployments) == 0 {
			fmt.Fprintln(t.w, "Deployments:    none (no agent deploys it)")
		} else {
			fmt.Fprintln(t.w, "Deployments:")
			tb := table{header: []string{"AGENT", "STATE", "SERIAL", "SERVED", "EXPIRES", "RENEWS", "LAST ATTEMPT", "RETRY", "LAST ERROR"}, states: []int{1}}
			for _, d := range st.Deployments {
				state := string(d.State)
				if d.Suspended {
					state += " (agent suspended)"
				}
				if d.Revoked {
					state += " (REVOKED serial in use)"
				}
				retry, lastError := "", d.LastError
				if d.Failures > 0 {
					retry = fmt.Sprintf("%d failure(s)", d.Failures)
					if d.RetryAfter != nil {
						retry += ", " + t.ago(d.RetryAfter)
					}
				}
				if d.Waiting != "" {
					retry, lastError = "waiting, "+t.ago(d.RetryAfter), d.Waiting
				}
				tb.rows = append(tb.rows, []string{d.Agent, state, shortSerial(d.Serial), served(d), t.ago(d.NotAfter),
					t.ago(d.RenewAt), t.ago(d.LastAttempt), retry, oneLine(lastError)})
			}
			t.print(tb)
		}
	}
	printRevisions(t, revs)
}

// served is what the deployment's verify address serves: "same" as
// installed, the other serial, the check's error, or "" when not checked.
func served(d apiv1.Deployment) string {
	switch {
	case d.ServedError != "":
		return "error: " + oneLine(d.ServedError)
	case d.ServedSerial == "":
		return ""
	case d.ServedSerial == d.Serial:
		return "same"
	}
	return shortSerial(d.ServedSerial) + " (not the installed one)"
}

// currentSerials is the newest serial issued, or the distinct ones.
func currentSerials(ds []apiv1.Deployment) string {
	seen := map[string]bool{}
	var out []string
	for _, d := range ds {
		if d.CurrentSerial != "" && !seen[d.CurrentSerial] {
			seen[d.CurrentSerial] = true
			out = append(out, d.CurrentSerial)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func shortSerial(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func describeAgent(ctx context.Context, t terminal, cl *apiclient.Client, a apiv1.Agent, revs []revisionAction) {
	describeObject(t, a.Object)
	if st := a.Status; st != nil {
		state := t.paint(st.State)
		if st.LastSeen != nil {
			state += " (last seen " + t.ago(st.LastSeen) + ")"
		}
		if st.Suspended {
			state += ", suspended (spec.suspend: its assignments are frozen)"
		}
		field(t, "State", state)
		field(t, "Version", orDash(st.Version))
		field(t, "Hostname", orDash(st.Hostname))
		fmt.Fprintln(t.w)
		if len(st.Assignments) == 0 {
			fmt.Fprintln(t.w, "Assignments:    none")
		} else {
			// Each assignment's deployment on this agent, for the first
			// few: one request each.
			const shown = 30
			fmt.Fprintf(t.w, "Assignments (%d):\n", len(st.Assignments))
			tb := table{header: []string{"CERTIFICATE", "STATE", "SERIAL", "EXPIRES", "LAST ERROR"}, states: []int{1}}
			for i, name := range st.Assignments {
				if i == shown {
					tb.rows = append(tb.rows, []string{fmt.Sprintf("… and %d more", len(st.Assignments)-shown), "", "", "", ""})
					break
				}
				row := []string{name, "", "", "", ""}
				if c, err := cl.Certificate(ctx, name); err == nil && c.Status != nil {
					for _, d := range c.Status.Deployments {
						if d.Agent == a.Name {
							row = []string{name, string(d.State), shortSerial(d.Serial), t.ago(d.NotAfter), oneLine(d.LastError)}
						}
					}
				}
				tb.rows = append(tb.rows, row)
			}
			t.print(tb)
		}
		if len(st.PolicyRefusals) > 0 {
			fmt.Fprintln(t.w, "\nRefused by the host policy:")
			tb := table{header: []string{"CERTIFICATE", "AT", "ERROR"}}
			for _, r := range st.PolicyRefusals {
				tb.rows = append(tb.rows, []string{r.Certificate, t.ago(r.At), oneLine(r.Error)})
			}
			t.print(tb)
		}
	}
	printRevisions(t, revs)
}

func printRevisions(t terminal, revs []revisionAction) {
	if len(revs) == 0 {
		return
	}
	fmt.Fprintln(t.w, "\nRecent revisions:")
	tb := table{header: []string{"ID", "ACTION", "OUTCOME", "REVISION", "AUTHOR", "PROCESSED"}, states: []int{2}}
	for _, r := range revs {
		at := r.rec.AppliedAt
		tb.rows = append(tb.rows, []string{strconv.FormatInt(r.rec.ID, 10), string(r.action), string(r.rec.Outcome),
			shortRevision(r.rec.Revision), r.rec.Revision.Author, t.ago(&at)})
	}
	t.print(tb)
}

// reconcileCmd: certops reconcile [--wait] [--timeout 2m] — ask the leader
// to fetch now (POST /hooks/reconcile) and, with --wait, wait for the pass
// that answers it: exit 0 when it left the reconciler Ready, 1 when it
// stalled or failed, or when no pass came within --timeout.
func reconcileCmd(ctx context.Context, env cliEnv, args []string) int {
	f := newFlagSet(env, "reconcile")
	var cf clientFlags
	cf.declare(f)
	wait := f.Bool("wait", false, "wait for the reconciler to fetch, and print the outcome")
	timeout := f.Duration("timeout", 2*time.Minute, "with --wait: how long to wait")
	poll := f.Duration("poll-interval", time.Second, "with --wait: how often to read the status")
	f.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: certops reconcile [--wait] [--timeout 2m]\n\nAsks the reconciler (its leader, through any replica) to fetch the config repository now.\n\nflags:")
		f.PrintDefaults()
	}
	if err := f.parseNoArgs(args); err != nil {
		return parseExit(err)
	}
	fail := func(err error) int { return env.fail("certops reconcile", cf.explain(err)) }
	if *timeout <= 0 || *poll <= 0 {
		return fail(failure.New(failure.Usage, "--timeout and --poll-interval must be positive"))
	}
	cl, err := cf.client()
	if err != nil {
		return fail(err)
	}
	req, err := cl.Reconcile(ctx)
	if err != nil {
		return fail(err)
	}
	t := newTerminal(env)
	if !*wait {
		fmt.Fprintf(env.stdout, "reconcile requested at %s\n", req.RequestedAt.UTC().Format(time.RFC3339))
		return 0
	}
	fmt.Fprintf(env.stderr, "reconcile requested at %s; waiting for the reconciler…\n", req.RequestedAt.UTC().Format(time.RFC3339))
	st, err := waitForPass(ctx, cl, req.RequestedAt, *timeout, *poll)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			printOutcome(t, st) // what the status said last
			return fail(fmt.Errorf("no reconcile pass within %s of the request (is a replica leading? see its logs)", *timeout))
		}
		return fail(err)
	}
	if !printOutcome(t, st) {
		return fail(errors.New("the reconciler is not ready"))
	}
	return 0
}

// waitForPass polls the status until a reconcile pass fetched after
// requestedAt (lastFetchAt, set by every fetch that read the head, or
// lastAttemptedAt, set when a new revision was applied or refused) and
// finished (not Reconciling with reason Progressing: an apply running),
// and returns that status. On timeout it returns the last status read and an
// error wrapping context.DeadlineExceeded.
func waitForPass(ctx context.Context, cl *apiclient.Client, requestedAt time.Time, timeout, every time.Duration) (apiv1.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	after := func(t *time.Time) bool { return t != nil && t.After(requestedAt) }
	var last apiv1.Status
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		st, err := cl.Status(ctx)
		switch {
		case err == nil:
			last = st
			// An apply in progress is saved before it runs (Reconciling,
			// Progressing, with the new lastFetchAt): wait for its end.
			applying := false
			if c, ok := st.Condition(state.ConditionReconciling); ok && c.Status == state.True && c.Reason == state.ReasonProgressing {
				applying = true
			}
			if !applying && (after(st.LastFetchAt) || after(st.LastAttemptedAt)) {
				return st, nil
			}
			// A failed fetch records no time, only its condition: a
			// transition since the request is the answer too.
			if c, ok := st.Condition(state.ConditionReady); ok && c.Status == state.False && c.LastTransitionTime.After(requestedAt) {
				return st, nil
			}
		case ctx.Err() != nil:
			return last, fmt.Errorf("waiting: %w", context.DeadlineExceeded)
		default:
			return last, err
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("waiting: %w", context.DeadlineExceeded)
		case <-tick.C:
		}
	}
}

// printOutcome prints what the pass did: the revision applied, or why not
// with the errors. It reports whether the reconciler is Ready.
func printOutcome(t terminal, st apiv1.Status) bool {
	ready, _ := st.Condition(state.ConditionReady)
	if ready.Status == state.True {
		fmt.Fprintf(t.w, "%s: revision %s applied\n", t.paintAs("Ready", "Ready"), orDash(st.LastAppliedRevision))
		return true
	}
	word := "Not ready"
	if c, ok := st.Condition(state.ConditionStalled); ok && c.Status == state.True {
		word = "Stalled"
	} else if c, ok := st.Condition(state.ConditionReconciling); ok && c.Status == state.True {
		word = "Retrying"
	}
	fmt.Fprintf(t.w, "%s (%s): %s\n", t.paintAs(word, "False"), orDash(string(ready.Reason)), oneLine(ready.Message))
	fmt.Fprintf(t.w, "attempted revision: %s\napplied revision:   %s (still serving)\n", orDash(st.LastAttemptedRevision), orDash(st.LastAppliedRevision))
	for _, e := range st.Errors {
		fmt.Fprintln(t.w, "  "+e)
	}
	return false
}
