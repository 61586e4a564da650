package issuer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/providers/dns/acmedns"
	"github.com/go-acme/lego/v5/providers/dns/cloudflare"
	legoexec "github.com/go-acme/lego/v5/providers/dns/exec"
	"github.com/go-acme/lego/v5/providers/dns/httpreq"
	"github.com/go-acme/lego/v5/providers/dns/pdns"

	"github.com/certops/certops/spec"
)

// ---- http-01 ----

// http01Provider is lego's challenge.Provider for http-01: it hands the
// challenge to the order's HTTP01Publisher (the agents' webroot).
type http01Provider struct {
	webroot string
}

func (p *http01Provider) Present(ctx context.Context, domain, token, keyAuth string) error {
	o := orderFrom(ctx)
	if o == nil || o.Webroots == nil {
		return errors.New("http-01 challenges are answered by the agents: order through the agent API")
	}
	return o.Webroots.PresentHTTP01(ctx, p.challenge(o, domain, token, keyAuth))
}

func (p *http01Provider) CleanUp(ctx context.Context, domain, token, keyAuth string) error {
	o := orderFrom(ctx)
	if o == nil || o.Webroots == nil {
		return nil
	}
	// The order's context may be done (a failed validation); withdraw anyway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return o.Webroots.CleanUpHTTP01(ctx, p.challenge(o, domain, token, keyAuth))
}

func (p *http01Provider) challenge(o *Order, domain, token, keyAuth string) HTTP01Challenge {
	return HTTP01Challenge{Certificate: o.Certificate, Agent: o.Agent, Domain: domain, Token: token,
		KeyAuth: keyAuth, Webroot: p.webroot}
}

// ---- dns-01 via scripts ----

// scriptProvider answers dns-01 by running the operator's scripts on the
// reconciler as `SCRIPT FQDN VALUE` (argv only, no shell).
type scriptProvider struct {
	present, cleanup string
	wait             time.Duration // the propagation wait; 0: lego checks the nameservers
	timeout          time.Duration // per script run
	logger           *slog.Logger
}

func (p *scriptProvider) Present(ctx context.Context, domain, _, keyAuth string) error {
	fqdn, value := dnsRecord(domain, keyAuth)
	return runScript(ctx, p.timeout, p.present, fqdn, value)
}

func (p *scriptProvider) CleanUp(ctx context.Context, domain, _, keyAuth string) error {
	if p.cleanup == "" {
		return nil
	}
	fqdn, value := dnsRecord(domain, keyAuth)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	if err := runScript(ctx, p.timeout, p.cleanup, fqdn, value); err != nil {
		// lego only logs a failed cleanup; say it where operators look.
		p.logger.Warn("dns-01 cleanup script failed; the TXT record may remain", "fqdn", fqdn, "err", err)
		return err
	}
	return nil
}

// Timeout bounds lego's propagation phase: the fixed wait plus a margin,
// or lego's default when lego checks the nameservers itself.
func (p *scriptProvider) Timeout() (timeout, interval time.Duration) {
	if p.wait > 0 {
		return p.wait + time.Minute, time.Second
	}
	return dns01.DefaultPropagationTimeout, dns01.DefaultPollingInterval
}

// dnsRecord is the TXT record answering a dns-01 challenge for domain
// (RFC 8555 §8.4): _acme-challenge.DOMAIN. with the base64url SHA-256 of
// the key authorization. It does not follow CNAMEs (scripts get the name
// the CA asks for).
func dnsRecord(domain, keyAuth string) (fqdn, value string) {
	sum := sha256.Sum256([]byte(keyAuth))
	return "_acme-challenge." + strings.TrimSuffix(domain, ".") + ".", base64.RawURLEncoding.EncodeToString(sum[:])
}

// maxScriptStderr bounds the stderr kept for the error message.
const maxScriptStderr = 4 << 10

// runScript runs path with args, killing it after timeout. A non-zero exit
// is an error carrying the script's stderr.
func runScript(ctx context.Context, timeout time.Duration, path string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var stderr tailBuffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(stderr.String())
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	if msg == "" {
		return fmt.Errorf("%s %s: %w", path, strings.Join(args, " "), err)
	}
	return fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, msg)
}

// tailBuffer keeps the last maxScriptStderr bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - maxScriptStderr; over > 0 {
		t.b = t.b[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a non-negative duration", s)
	}
	return d, nil
}

// ---- dns-01 via lego DNS providers ----

// propagationWaitKey in an env file replaces lego's nameserver check by a
// fixed wait (for split-horizon DNS, or a test server).
const propagationWaitKey = "CERTOPS_PROPAGATION_WAIT"

// newDNSProvider builds the named lego DNS provider from the KEY=VALUE
// lines of envFile (the keys lego documents for the provider, e.g.
// CLOUDFLARE_DNS_API_TOKEN). The values go into the provider's Config:
// the process environment is neither read nor changed.
func newDNSProvider(name, envFile string) (challenge.Provider, time.Duration, error) {
	construct, ok := dnsProviders[name]
	if !ok {
		return nil, 0, fmt.Errorf("dns01.provider: unknown DNS provider %q (supported: %s)", name, strings.Join(spec.DNSProviders, ", "))
	}
	env := envValues{}
	if envFile != "" {
		var err error
		if env, err = readEnvFile(envFile); err != nil {
			return nil, 0, fmt.Errorf("dns01.envFile: %w", err)
		}
	}
	wait, err := parseWait(env[propagationWaitKey])
	if err != nil {
		return nil, 0, fmt.Errorf("dns01.envFile: %s: %w", propagationWaitKey, err)
	}
	p, err := construct(env)
	if err != nil {
		return nil, 0, fmt.Errorf("dns01 provider %s: %w", name, err)
	}
	return p, wait, nil
}

// dnsProviders holds a constructor for every name of spec.DNSProviders, the
// list validation accepts, and for no other.
var dnsProviders = map[string]func(envValues) (challenge.Provider, error){
	"acmedns":    newACMEDNS,
	"cloudflare": newCloudflare,
	"exec":       newExec,
	"httpreq":    newHTTPReq,
	"pdns":       newPDNS,
}

func newExec(env envValues) (challenge.Provider, error) {
	var err error
	cfg := &legoexec.Config{
		Program:            env.required("EXEC_PATH", &err),
		Mode:               env["EXEC_MODE"],
		PropagationTimeout: env.seconds("EXEC_PROPAGATION_TIMEOUT", dns01.DefaultPropagationTimeout, &err),
		PollingInterval:    env.seconds("EXEC_POLLING_INTERVAL", dns01.DefaultPollingInterval, &err),
		SequenceInterval:   env.seconds("EXEC_SEQUENCE_INTERVAL", dns01.DefaultPropagationTimeout, &err),
	}
	if err != nil {
		return nil, err
	}
	return legoexec.NewDNSProviderConfig(cfg)
}

func newACMEDNS(env envValues) (challenge.Provider, error) {
	var err error
	cfg := &acmedns.Config{APIBase: env.required("ACME_DNS_API_BASE", &err),
		StoragePath: env["ACME_DNS_STORAGE_PATH"], StorageBaseURL: env["ACME_DNS_STORAGE_BASE_URL"]}
	if v := env["ACME_DNS_ALLOWLIST"]; v != "" {
		cfg.AllowList = strings.Split(v, ",")
	}
	if err != nil {
		return nil, err
	}
	return acmedns.NewDNSProviderConfig(cfg)
}

func newHTTPReq(env envValues) (challenge.Provider, error) {
	var err error
	endpoint := env.url("HTTPREQ_ENDPOINT", &err)
	cfg := &httpreq.Config{
		Endpoint: endpoint, Mode: env["HTTPREQ_MODE"],
		Username: env["HTTPREQ_USERNAME"], Password: env["HTTPREQ_PASSWORD"],
		PropagationTimeout: env.seconds("HTTPREQ_PROPAGATION_TIMEOUT", dns01.DefaultPropagationTimeout, &err),
		PollingInterval:    env.seconds("HTTPREQ_POLLING_INTERVAL", dns01.DefaultPollingInterval, &err),
		HTTPClient:         &http.Client{Timeout: env.seconds("HTTPREQ_HTTP_TIMEOUT", 30*time.Second, &err)},
	}
	if err != nil {
		return nil, err
	}
	return httpreq.NewDNSProviderConfig(cfg)
}

func newPDNS(env envValues) (challenge.Provider, error) {
	var err error
	cfg := &pdns.Config{
		APIKey: env.required("PDNS_API_KEY", &err), Host: env.url("PDNS_API_URL", &err),
		ServerName:         env.or("PDNS_SERVER_NAME", "localhost"),
		APIVersion:         env.integer("PDNS_API_VERSION", 0, &err),
		TTL:                env.integer("PDNS_TTL", dns01.DefaultTTL, &err),
		PropagationTimeout: env.seconds("PDNS_PROPAGATION_TIMEOUT", 2*time.Minute, &err),
		PollingInterval:    env.seconds("PDNS_POLLING_INTERVAL", 2*time.Second, &err),
		HTTPClient:         &http.Client{Timeout: env.seconds("PDNS_HTTP_TIMEOUT", 30*time.Second, &err)},
	}
	if err != nil {
		return nil, err
	}
	return pdns.NewDNSProviderConfig(cfg)
}

func newCloudflare(env envValues) (challenge.Provider, error) {
	var err error
	cfg := &cloudflare.Config{
		AuthEmail:          env.or("CLOUDFLARE_EMAIL", env["CF_API_EMAIL"]),
		AuthKey:            env.or("CLOUDFLARE_API_KEY", env["CF_API_KEY"]),
		AuthToken:          env.or("CLOUDFLARE_DNS_API_TOKEN", env["CF_DNS_API_TOKEN"]),
		ZoneToken:          env.or("CLOUDFLARE_ZONE_API_TOKEN", env["CF_ZONE_API_TOKEN"]),
		BaseURL:            env["CLOUDFLARE_BASE_URL"],
		TTL:                env.integer("CLOUDFLARE_TTL", 120, &err),
		PropagationTimeout: env.seconds("CLOUDFLARE_PROPAGATION_TIMEOUT", 2*time.Minute, &err),
		PollingInterval:    env.seconds("CLOUDFLARE_POLLING_INTERVAL", dns01.DefaultPollingInterval, &err),
		HTTPClient:         &http.Client{Timeout: env.seconds("CLOUDFLARE_HTTP_TIMEOUT", 30*time.Second, &err)},
	}
	if err != nil {
		return nil, err
	}
	if cfg.ZoneToken == "" {
		cfg.ZoneToken = cfg.AuthToken
	}
	if cfg.AuthToken == "" && (cfg.AuthEmail == "" || cfg.AuthKey == "") {
		return nil, errors.New("CLOUDFLARE_DNS_API_TOKEN, or CLOUDFLARE_EMAIL and CLOUDFLARE_API_KEY, are required")
	}
	return cloudflare.NewDNSProviderConfig(cfg)
}

// envValues are the KEY=VALUE pairs of an env file. Its helpers record
// the first problem in *err and carry on, so a config is built in one go.
type envValues map[string]string

// readEnvFile parses KEY=VALUE lines; blank lines and # comments are
// skipped, an "export " prefix and matching quotes around the value are
// removed.
func readEnvFile(path string) (envValues, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := envValues{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return env, nil
}

func (e envValues) or(key, def string) string {
	if v := e[key]; v != "" {
		return v
	}
	return def
}

func (e envValues) required(key string, err *error) string {
	v := e[key]
	if v == "" && *err == nil {
		*err = fmt.Errorf("%s is required in the env file", key)
	}
	return v
}

func (e envValues) url(key string, err *error) *url.URL {
	v := e.required(key, err)
	if v == "" {
		return nil
	}
	u, perr := url.Parse(v)
	if (perr != nil || u.Host == "") && *err == nil {
		*err = fmt.Errorf("%s: %q is not a URL", key, v)
	}
	return u
}

// seconds reads a duration as lego does (whole seconds), or a Go duration.
func (e envValues) seconds(key string, def time.Duration, err *error) time.Duration {
	v := e[key]
	if v == "" {
		return def
	}
	if n, perr := strconv.Atoi(v); perr == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if d, perr := time.ParseDuration(v); perr == nil && d > 0 {
		return d
	}
	if *err == nil {
		*err = fmt.Errorf("%s: %q is not a number of seconds", key, v)
	}
	return def
}

func (e envValues) integer(key string, def int, err *error) int {
	v := e[key]
	if v == "" {
		return def
	}
	n, perr := strconv.Atoi(v)
	if perr != nil && *err == nil {
		*err = fmt.Errorf("%s: %q is not an integer", key, v)
	}
	return n
}
