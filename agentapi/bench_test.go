package agentapi_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certops/certops/agentproto"
	"github.com/certops/certops/spec"
)

// benchFleet is agents agents and certs certificates: each certificate is
// deployed to one agent by name, every tenth to a pool of ten agents by
// label (as the fleet generator does).
func benchFleet(agents, certs int) []*spec.Object {
	objs := []*spec.Object{issuerObj("internal-ca")}
	for i := range agents {
		objs = append(objs, agentObj(fmt.Sprintf("agent-%05d", i), map[string]string{"pool": fmt.Sprintf("pool-%04d", i/10)}))
	}
	for i := range certs {
		agent := i % agents
		c := certObj(fmt.Sprintf("svc-%05d", i), []string{fmt.Sprintf("agent-%05d", agent)}, nil)
		if i%10 == 9 {
			c = certObj(fmt.Sprintf("svc-%05d", i), nil, map[string]string{"pool": fmt.Sprintf("pool-%04d", agent/10)})
		}
		objs = append(objs, c)
	}
	return objs
}

// load runs n requests from workers goroutines and returns the
// throughput and the 99th percentile latency.
func load(b *testing.B, n, workers int, do func(i int) error) (perSecond float64, p99 time.Duration) {
	latencies := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t := time.Now()
				if err := do(i); err != nil {
					failed.Store(err)
					return
				}
				latencies[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(latencies)
	return float64(n) / elapsed.Seconds(), latencies[n*99/100]
}

// BenchmarkPollNotModified measures conditional polls of idle agents over
// real HTTP on 127.0.0.1 with 10,000 agents and 50,000 certificates in the
// snapshot. Targets: ≥ 5,000 polls/s, p99 ≤ 20 ms.
func BenchmarkPollNotModified(b *testing.B) {
	const agents, certs, workers, batch = 10000, 50000, 64, 20000
	e := newBenchEnv(b, benchFleet(agents, certs))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	etags := make([]string, agents)
	for i := range agents {
		resp, err := pollOnce(client, e.http.URL, tokenOf(fmt.Sprintf("agent-%05d", i)), "")
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("first poll of agent %d: %v %v", i, resp, err)
		}
		etags[i] = resp.Header.Get("ETag")
	}
	var rates []float64
	var worst time.Duration
	for b.Loop() {
		rate, p99 := load(b, batch, workers, func(i int) error {
			a := (i * 7919) % agents
			resp, err := pollOnce(client, e.http.URL, tokenOf(fmt.Sprintf("agent-%05d", a)), etags[a])
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusNotModified {
				return fmt.Errorf("agent %d: status %d", a, resp.StatusCode)
			}
			return nil
		})
		rates, worst = append(rates, rate), max(worst, p99)
	}
	b.ReportMetric(slices.Min(rates), "polls/s")
	b.ReportMetric(float64(worst.Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}

func pollOnce(client *http.Client, url, token, etag string) (*http.Response, error) {
	req, err := http.NewRequest("GET", url+agentproto.PathAssignments, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// BenchmarkIssueLocalCA measures issuance over HTTP: CSR check, signing
// with the local CA and the Postgres write, for 1,000 agents with four
// certificates each. Each batch issues every (certificate, agent) once, and
// the clock then moves past the reissue limit (Config.ReissueInterval), so
// every request is a real issuance. Target: ≥ 1,000 issuances/s. One
// sub-benchmark per number of concurrent clients: with durable commits
// (DATABASE_URL on a server with fsync on) the rate grows with them only
// if commits are grouped rather than serialized.
func BenchmarkIssueLocalCA(b *testing.B) {
	for _, workers := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", workers), func(b *testing.B) { benchmarkIssueLocalCA(b, workers) })
	}
}

func benchmarkIssueLocalCA(b *testing.B, workers int) {
	const agents, perAgent = 1000, 4
	const batch = agents * perAgent
	objs := []*spec.Object{issuerObj("internal-ca")}
	for i := range agents {
		name := fmt.Sprintf("agent-%05d", i)
		objs = append(objs, agentObj(name, nil))
		for j := range perAgent {
			objs = append(objs, certObj(fmt.Sprintf("svc-%05d-%d", i, j), []string{name}, nil))
		}
	}
	e := newBenchEnv(b, objs)
	// The agents' CSRs, made up front: key generation is the agent's work.
	type request struct {
		agent, cert string
		body        []byte
	}
	reqs := make([]request, 0, batch)
	for i := range agents {
		for j := range perAgent {
			agent, cert := fmt.Sprintf("agent-%05d", i), fmt.Sprintf("svc-%05d-%d", i, j)
			a := e.assignment(agent, cert)
			_, csr := csrFor(b, a)
			reqs = append(reqs, request{agent: agent, cert: cert, body: mustJSON(b, agentproto.IssueRequest{SpecHash: a.SpecHash, CSRPEM: csr})})
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	var rates []float64
	var worst time.Duration
	for b.Loop() {
		e.clock.Advance(2 * time.Minute) // past the reissue limit of the last batch
		rate, p99 := load(b, batch, workers, func(i int) error {
			r := reqs[i]
			req, err := http.NewRequest("POST", e.http.URL+issuePath(r.cert), bytes.NewReader(r.body))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tokenOf(r.agent))
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("issue %s: %d %s", r.cert, resp.StatusCode, body)
			}
			return nil
		})
		rates, worst = append(rates, rate), max(worst, p99)
	}
	b.ReportMetric(slices.Min(rates), "issuances/s")
	b.ReportMetric(float64(worst.Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}
