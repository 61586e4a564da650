// Package agentproto defines the wire protocol between certops agents and
// the reconciler: the routes under PathPrefix, the JSON messages, and the
// rules both sides rely on. It holds types only, so the agent binary links
// neither the server nor its dependencies.
//
// Every request carries "Authorization: Bearer <token>"; the server hashes
// the token with SHA-256 and finds the Agent object whose spec.tokenSHA256
// matches. The token is bound to that agent's name: an agent only ever sees
// its own assignments and may only submit CSRs for certificates assigned to it.
//
// Routes:
//
//	GET  /agent/v1/assignments            → 200 Assignments, or 304 when If-None-Match matches the ETag
//	POST /agent/v1/heartbeat              Heartbeat → 204
//	POST /agent/v1/certificates/{name}/issue  IssueRequest → 200 Issued, or 202 IssuePending
//	POST /agent/v1/reports                Report → 204
//	POST /agent/v1/served                 ServedReport → 204
//	POST /agent/v1/challenges/{token}/ready   → 204 (the http-01 file is in place)
//
// Issuers that take time (ACME) answer an issue request 202 with
// IssuePending: the order runs on the server, and the certificate appears
// as the assignment's Current when it completes; the agent keeps polling
// (and may repeat the request, which is answered 202 again while the order
// runs). During an http-01 order the assignments list Challenges: the
// agent writes each key authorization to
// WEBROOT/.well-known/acme-challenge/TOKEN, confirms it on the ready route,
// and removes the file once the challenge is no longer listed.
//
// Errors are JSON, ErrorBody: {"error": {"code": "...", "message": "..."}}.
// The code says what happened and what the agent does about it; the status
// only repeats it for HTTP tooling. The codes (the same on every certops
// JSON error: agent protocol, status API, webhooks):
//
//	code                status  meaning                                               what the agent does
//	invalid             400     malformed request (JSON, CSR, a field, a token,       fails the deployment
//	                            bad bytes; a report's unknown serial or bad time)
//	unauthorized        401     token missing, unknown or revoked (no detail)         stops the pass; backs off, never faster than its interval
//	forbidden           403     access not allowed (not on the agent routes)          fails the deployment
//	not_found           404     certificate not assigned; no such route or challenge  fails the deployment
//	method_not_allowed  405     wrong method (with Allow)                             fails the deployment
//	conflict            409     the request used an outdated spec hash                polls the assignments again
//	too_large           413     request body over MaxBodyBytes                        fails the deployment
//	rejected            422     well-formed but refused (not on the agent routes)     fails the deployment
//	csr_mismatch        422     the CSR does not match the certificate's spec         fails the deployment (the server backs off)
//	name_not_permitted  422     the issuer's CA may not sign a name of the spec       fails the deployment (the server backs off)
//	backoff             429     issuance backs off after failures, or was just        waits for that certificate; serves the others
//	                            granted for this spec; Retry-After
//	internal            500     a server bug; the message is "internal error"         stops the pass; backs off
//	unavailable         503     Postgres unreachable, or starting; Retry-After        issue: as backoff; elsewhere: stops the pass
//	issuer_unavailable  503     the issuer failed; Retry-After                        waits for that certificate; serves the others
//
// "Fails the deployment" is an issue request's fate: the agent reports it
// and retries on its own schedule. A refused report is dropped, a refused
// challenge confirmation logged. An answer without a known code (say, a
// proxy's 502) is read by its status: 401 unauthorized, 409 conflict, 429
// backoff, 503 unavailable, any other 5xx internal, anything else invalid.
package agentproto

import "time"

// PathPrefix is the prefix of every agent route.
const PathPrefix = "/agent/v1/"

// Routes, relative to the server URL.
const (
	PathAssignments = PathPrefix + "assignments"
	PathHeartbeat   = PathPrefix + "heartbeat"
	PathReports     = PathPrefix + "reports"
	PathServed      = PathPrefix + "served"
	// PathIssue is a pattern: replace {name} with the certificate name.
	PathIssue = PathPrefix + "certificates/{name}/issue"
	// PathChallengeReady is a pattern: replace {token} with the token.
	PathChallengeReady = PathPrefix + "challenges/{token}/ready"
)

// ChallengePathPrefix is where http-01 files go under a webroot (RFC 8555 §8.3).
const ChallengePathPrefix = ".well-known/acme-challenge/"

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 256 << 10

// Every string an agent sends — in a body, in the path — is valid UTF-8
// and holds no control character; the server answers 400 (invalid) to one
// that does not, or that is over its limit. A string field is one line of
// at most MaxFieldBytes, unless its tag says otherwise: text:"multiline"
// (tabs and newlines allowed, at most MaxTextBytes) or text:"pem" (tabs
// and newlines allowed, bounded by the body). A path is at most
// MaxPathBytes.
const (
	MaxFieldBytes = 256
	MaxTextBytes  = 16 << 10
	MaxPathBytes  = 1024
)

// MaxReportError is how much of a report's error the server keeps; the
// agent sends no more (cut on a UTF-8 boundary, with a marker).
const MaxReportError = 4096

// Assignments is everything an agent is asked to deploy. Its ETag header
// changes whenever any field changes, so an idle agent polls with
// If-None-Match and gets 304.
type Assignments struct {
	Agent        string       `json:"agent"`
	Certificates []Assignment `json:"certificates"`
	// Challenges are the http-01 challenges this agent is asked to serve
	// now (ACME orders of certificates it deploys, for itself or for other
	// agents serving the same names).
	Challenges []Challenge `json:"challenges,omitempty"`
	// Bundles are the trust bundles (TrustBundle objects) this agent
	// installs, by name.
	Bundles []Bundle `json:"bundles,omitempty"`
}

// Bundle is a trust bundle to install: PEM, the CA certificates computed
// on the server from the TrustBundle's sources (each once, in a stable
// order), written to Files.Bundle whenever the file does not hold exactly
// PEM, then Reload is run. SHA256 is the hex SHA-256 of PEM, which the
// agent reports back.
type Bundle struct {
	Name   string      `json:"name"`
	PEM    string      `json:"pem"`
	SHA256 string      `json:"sha256"`
	Files  BundleFiles `json:"files"`
	Reload []string    `json:"reload,omitempty"`
}

// BundleFiles is where a bundle goes, with its mode ("0644" when empty)
// and owner.
type BundleFiles struct {
	Bundle string `json:"bundle"`
	Mode   string `json:"mode,omitempty"`
	Owner  string `json:"owner,omitempty"`
	Group  string `json:"group,omitempty"`
}

// Challenge is an ACME http-01 challenge: the agent writes KeyAuth to
// Webroot/.well-known/acme-challenge/Token (Token is base64url, at most
// MaxTokenLength characters; Webroot is absolute) and confirms on
// PathChallengeReady.
type Challenge struct {
	Token       string `json:"token"`
	KeyAuth     string `json:"keyAuth"`
	Webroot     string `json:"webroot"`
	Certificate string `json:"certificate"`
	// Ready is true once the server has this agent's confirmation.
	Ready bool `json:"ready,omitempty"`
}

// MaxTokenLength bounds challenge tokens (RFC 8555 asks for at least 128
// bits; CAs use 43 characters).
const MaxTokenLength = 128

// IssuePending is the 202 answer to an issue request: the order runs on
// the server; poll the assignments for Current.
type IssuePending struct {
	Status  string `json:"status"` // "pending"
	Message string `json:"message,omitempty"`
}

// Assignment is one certificate the agent deploys.
type Assignment struct {
	Name string `json:"name"`
	// SpecHash identifies the certificate spec the agent must issue for; it
	// changes when names, key, issuer, duration or deployment change.
	SpecHash string `json:"specHash"`

	CommonName     string   `json:"commonName,omitempty"`
	DNSNames       []string `json:"dnsNames,omitempty"`
	IPAddresses    []string `json:"ipAddresses,omitempty"`
	URIs           []string `json:"uris,omitempty"`
	EmailAddresses []string `json:"emailAddresses,omitempty"`
	Key            KeySpec  `json:"key"`
	Files          Files    `json:"files"`
	Reload         []string `json:"reload,omitempty"`
	Verify         *Verify  `json:"verify,omitempty"`
	// Reissue is the certificate's spec.reissue: a certificate issued
	// after it changed gets a new key, even with rotationPolicy Never.
	Reissue string `json:"reissue,omitempty"`
	// Suspended: the certificate or the agent is suspended; the agent
	// issues, installs and renews nothing for it and keeps what it has.
	Suspended bool `json:"suspended,omitempty"`

	// Current is the newest certificate issued to this agent for SpecHash, if
	// any. The agent installs it when it holds the matching private key.
	Current *Issued `json:"current,omitempty"`
	// RenewAt is when the agent should ask for a new certificate (server
	// computed, with jitter). Zero when Current is nil: issue now.
	RenewAt time.Time `json:"renewAt,omitzero"`
	// NotBefore, when set, is the earliest time the server accepts another
	// issue request (backoff after failures).
	NotBefore time.Time `json:"notBefore,omitzero"`
}

// KeySpec is the private key the agent generates on the host.
type KeySpec struct {
	Algorithm      string `json:"algorithm"` // ECDSA, RSA or Ed25519
	Size           int    `json:"size,omitempty"`
	RotationPolicy string `json:"rotationPolicy"` // Always or Never
}

// Files are the absolute paths the agent writes, as a set.
type Files struct {
	Cert      string `json:"cert,omitempty"`
	Chain     string `json:"chain,omitempty"`
	Fullchain string `json:"fullchain,omitempty"`
	Key       string `json:"key,omitempty"`
	Mode      string `json:"mode,omitempty"` // octal, e.g. "0600"; applies to every file
	Owner     string `json:"owner,omitempty"`
	Group     string `json:"group,omitempty"`
	// Layout is how the files are installed: "files" (the default, "" too)
	// or "symlink" (see the agent's documentation).
	Layout string `json:"layout,omitempty"`

	// Combined (key, certificate and chain in one PEM file), DER (the
	// certificate), PKCS12 and JKS (key containers with the chain,
	// encrypted with the password the agent reads from the file
	// PKCS12PasswordFile or JKSPasswordFile on its host; PKCS12FriendlyName
	// names the PKCS#12 key entry, if set; JKSAlias names the JKS one,
	// default the certificate's name). Key containers are
	// capped at mode 0600 like the key.
	Combined           string `json:"combined,omitempty"`
	DER                string `json:"der,omitempty"`
	PKCS12             string `json:"pkcs12,omitempty"`
	PKCS12PasswordFile string `json:"pkcs12PasswordFile,omitempty"`
	PKCS12FriendlyName string `json:"pkcs12FriendlyName,omitempty"`
	JKS                string `json:"jks,omitempty"`
	JKSPasswordFile    string `json:"jksPasswordFile,omitempty"`
	JKSAlias           string `json:"jksAlias,omitempty"`
}

// Verify asks the agent to dial Address with SNI ServerName after a reload
// and compare the served leaf with the one installed.
type Verify struct {
	Address    string `json:"address"`
	ServerName string `json:"serverName,omitempty"`
}

// Issued is a signed certificate: the leaf and the chain up to (and
// including) the issuing CA, PEM encoded. There is never a private key.
type Issued struct {
	Serial    string    `json:"serial"` // hex
	SHA256    string    `json:"sha256"` // hex fingerprint of the leaf DER
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	CertPEM   string    `json:"certPEM"`
	ChainPEM  string    `json:"chainPEM"`
}

// IssueRequest asks for a certificate for a CSR made on the agent.
type IssueRequest struct {
	SpecHash string `json:"specHash"`
	CSRPEM   string `json:"csrPEM" text:"pem"`
}

// Heartbeat tells the server the agent is alive.
type Heartbeat struct {
	Version  string `json:"version"`
	Hostname string `json:"hostname"`
}

// Report results.
const (
	ResultInstalled  = "installed"   // files written, reloaded and verified
	ResultFailed     = "failed"      // nothing changed (e.g. key generation or issue failed)
	ResultRolledBack = "rolled-back" // reload or verify failed; the previous files are back
)

// Report stages.
const (
	StageIssue   = "issue"
	StageInstall = "install"
	StageReload  = "reload"
	StageVerify  = "verify"
	// StagePolicy: the host policy (certops-agent --policy-file, or
	// --allow-dirs) refused the assignment before anything was issued,
	// written or run; the error starts with "HostPolicyRefused: " and names
	// the rule. The result is failed, without a serial.
	StagePolicy = "policy"
)

// ReasonHostPolicyRefused starts the error of a report about an assignment
// the host policy does not allow (stage policy); the rule that refused it
// follows after ": ".
const ReasonHostPolicyRefused = "HostPolicyRefused"

// Report is the outcome of one deployment attempt: of a certificate, or,
// with Bundle set (and Certificate, SpecHash and Serial empty), of a trust
// bundle, whose installed content SHA256 names (the Bundle.SHA256 the
// agent installed or tried to).
type Report struct {
	Certificate string    `json:"certificate"`
	Bundle      string    `json:"bundle,omitempty"`
	SHA256      string    `json:"sha256,omitempty"`
	SpecHash    string    `json:"specHash"`
	Serial      string    `json:"serial,omitempty"`
	Result      string    `json:"result"`
	Stage       string    `json:"stage,omitempty"`
	Error       string    `json:"error,omitempty" text:"multiline"`
	At          time.Time `json:"at"`
}

// ServedReport is what the agent's periodic served checks found: for each
// assignment with a Verify address, the leaf that address serves now.
// The server takes a report whole or not at all: one bad check (a
// certificate not assigned to the agent, another address than the
// assignment's Verify.Address, a bad serial or time) refuses the report
// with 400 invalid (404 not_found for a certificate not assigned), and
// nothing is recorded.
type ServedReport struct {
	Checks []ServedCheck `json:"checks"`
}

// MaxServedChecks bounds the checks of one ServedReport; an agent with more
// sends several reports.
const MaxServedChecks = 500

// MaxServedError is how much of a check's error the server keeps; the
// agent sends no more (cut on a UTF-8 boundary, with a marker).
const MaxServedError = 1024

// ServedCheck is one served check: the TLS handshake with Address (SNI the
// Verify.ServerName, else the first DNS name, else the common name) and
// the leaf it served. Either Serial (with NotBefore and NotAfter) or Error
// is set.
type ServedCheck struct {
	Certificate string `json:"certificate"`
	Address     string `json:"address"`
	// Serial is the served leaf's serial number, lowercase hex without
	// leading zeros (as Issued.Serial).
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	// Error is why the check failed (connection refused, handshake
	// failed, no certificate served), at most MaxServedError bytes.
	Error     string    `json:"error,omitempty" text:"multiline"`
	CheckedAt time.Time `json:"checkedAt"`
}

// Code is the machine-readable code of an error answer. The strings are on
// the wire: never change one.
type Code string

// The error codes; see the package documentation for their statuses and
// what the agent does about each.
const (
	CodeInvalid           Code = "invalid"
	CodeUnauthorized      Code = "unauthorized"
	CodeForbidden         Code = "forbidden"
	CodeNotFound          Code = "not_found"
	CodeMethodNotAllowed  Code = "method_not_allowed"
	CodeConflict          Code = "conflict"
	CodeTooLarge          Code = "too_large"
	CodeRejected          Code = "rejected"
	CodeCSRMismatch       Code = "csr_mismatch"
	CodeNameNotPermitted  Code = "name_not_permitted"
	CodeBackoff           Code = "backoff"
	CodeInternal          Code = "internal"
	CodeUnavailable       Code = "unavailable"
	CodeIssuerUnavailable Code = "issuer_unavailable"
	CodeSuspended         Code = "suspended"
	// CodeWaiting (429): no failure, the server holds the issue back (the
	// CA's rate limit); the assignment's notBefore says until when.
	CodeWaiting Code = "waiting"
)

// ErrorBody is the JSON shape of every error answer of every certops
// server (agent protocol, status API, webhooks).
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of an ErrorBody.
type ErrorDetail struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// ValidToken reports whether an ACME challenge token is acceptable: base64url
// of sane length (RFC 8555 §8.1). The token becomes a file name on the agents,
// so both sides check it.
func ValidToken(t string) bool {
	if t == "" || len(t) > MaxTokenLength {
		return false
	}
	for _, c := range t {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
