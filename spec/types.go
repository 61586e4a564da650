package spec

// APIVersion is the only apiVersion certops accepts in desired-state documents.
const APIVersion = "certops/v1"

// Kind names a desired-state document type.
type Kind string

// The kinds of desired-state documents, in the order they are applied.
const (
	KindIssuer              Kind = "Issuer"
	KindAgent               Kind = "Agent"
	KindCertificate         Kind = "Certificate"
	KindAlertPolicy         Kind = "AlertPolicy"
	KindNotificationChannel Kind = "NotificationChannel"
	KindBackupPolicy        Kind = "BackupPolicy"
)

// Kinds lists every kind in apply order.
var Kinds = []Kind{KindIssuer, KindAgent, KindCertificate, KindAlertPolicy, KindNotificationChannel, KindBackupPolicy, KindTrustBundle, KindRevocation}

// Metadata is the metadata block shared by every document.
type Metadata struct {
	// Name is unique per kind and DNS-label-like.
	Name        string            `json:"name" yaml:"name"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
}

// Header is the part every document starts with.
type Header struct {
	APIVersion string   `json:"apiVersion" yaml:"apiVersion"`
	Kind       Kind     `json:"kind" yaml:"kind"`
	Metadata   Metadata `json:"metadata" yaml:"metadata"`
}

// Typed documents. Each embeds the Header and carries its kind's spec.

// Issuer is a document of kind Issuer.
type Issuer struct {
	Header `json:",inline" yaml:",inline"`
	Spec   IssuerSpec `json:"spec" yaml:"spec"`
}

// Agent is a document of kind Agent.
type Agent struct {
	Header `json:",inline" yaml:",inline"`
	Spec   AgentSpec `json:"spec" yaml:"spec"`
}

// Certificate is a document of kind Certificate.
type Certificate struct {
	Header `json:",inline" yaml:",inline"`
	Spec   CertificateSpec `json:"spec" yaml:"spec"`
}

// AlertPolicy is a document of kind AlertPolicy.
type AlertPolicy struct {
	Header `json:",inline" yaml:",inline"`
	Spec   AlertPolicySpec `json:"spec" yaml:"spec"`
}

// NotificationChannel is a document of kind NotificationChannel.
type NotificationChannel struct {
	Header `json:",inline" yaml:",inline"`
	Spec   NotificationChannelSpec `json:"spec" yaml:"spec"`
}

// BackupPolicy is a document of kind BackupPolicy.
type BackupPolicy struct {
	Header `json:",inline" yaml:",inline"`
	Spec   BackupPolicySpec `json:"spec" yaml:"spec"`
}

// ---- Issuer ----

// IssuerSpec configures one issuer: exactly one of LocalCA, ACME, External or Vault.
type IssuerSpec struct {
	LocalCA  *LocalCAIssuer  `json:"localCA,omitempty" yaml:"localCA,omitempty"`
	ACME     *ACMEIssuer     `json:"acme,omitempty" yaml:"acme,omitempty"`
	External *ExternalIssuer `json:"external,omitempty" yaml:"external,omitempty"`
	Vault    *VaultIssuer    `json:"vault,omitempty" yaml:"vault,omitempty"`
}

// LocalCAIssuer signs with a CA whose certificate and key are files on the reconciler.
type LocalCAIssuer struct {
	CertFile string `json:"certFile" yaml:"certFile"`
	KeyFile  string `json:"keyFile" yaml:"keyFile"`
	// PublicURL, when set, is where relying parties reach certops' /pki
	// routes: issued certificates then carry the CRL distribution point
	// and the AIA OCSP and CA-issuers URLs under it.
	PublicURL string `json:"publicURL,omitempty" yaml:"publicURL,omitempty"`
}

// ACMEIssuer obtains certificates from an ACME server.
type ACMEIssuer struct {
	DirectoryURL   string        `json:"directoryURL" yaml:"directoryURL"`
	Email          string        `json:"email,omitempty" yaml:"email,omitempty"`
	AccountKeyFile string        `json:"accountKeyFile" yaml:"accountKeyFile"`
	CABundleFile   string        `json:"caBundleFile,omitempty" yaml:"caBundleFile,omitempty"`
	EAB            *ACMEEAB      `json:"eab,omitempty" yaml:"eab,omitempty"`
	Profile        string        `json:"profile,omitempty" yaml:"profile,omitempty"`
	Challenge      ACMEChallenge `json:"challenge" yaml:"challenge"`
	// RateLimits are the CA's limits certops keeps its orders within.
	RateLimits *ACMERateLimits `json:"rateLimits,omitempty" yaml:"rateLimits,omitempty"`
}

// ACMERateLimits are limits of the CA that certops schedules its orders
// within (see ACMEIssuer.CertificatesPerNameSetPerWeek).
type ACMERateLimits struct {
	// CertificatesPerNameSetPerWeek is how many certificates for one exact
	// set of names the CA issues in 7 days (Let's Encrypt: 5); 0 means no
	// limit. Unset: 5 for Let's Encrypt, no limit for other CAs.
	CertificatesPerNameSetPerWeek *int `json:"certificatesPerNameSetPerWeek,omitempty" yaml:"certificatesPerNameSetPerWeek,omitempty"`
}

// ACMEEAB is an External Account Binding; the HMAC key is read from a file.
type ACMEEAB struct {
	KeyID    string `json:"keyID" yaml:"keyID"`
	HMACFile string `json:"hmacFile" yaml:"hmacFile"`
}

// ACMEChallenge selects exactly one challenge type.
type ACMEChallenge struct {
	HTTP01       *HTTP01Challenge       `json:"http01,omitempty" yaml:"http01,omitempty"`
	DNS01        *DNS01Challenge        `json:"dns01,omitempty" yaml:"dns01,omitempty"`
	DNSPersist01 *DNSPersist01Challenge `json:"dnsPersist01,omitempty" yaml:"dnsPersist01,omitempty"`
}

// HTTP01Challenge places challenge files under a webroot on the agent hosts.
type HTTP01Challenge struct {
	Webroot string `json:"webroot" yaml:"webroot"`
}

// DNS01Challenge answers dns-01 either with scripts run on the reconciler or
// with a lego DNS provider; exactly one of PresentScript or Provider is set.
type DNS01Challenge struct {
	PresentScript   string `json:"presentScript,omitempty" yaml:"presentScript,omitempty"`
	CleanupScript   string `json:"cleanupScript,omitempty" yaml:"cleanupScript,omitempty"`
	PropagationWait string `json:"propagationWait,omitempty" yaml:"propagationWait,omitempty"`
	Provider        string `json:"provider,omitempty" yaml:"provider,omitempty"`
	EnvFile         string `json:"envFile,omitempty" yaml:"envFile,omitempty"`
}

// ---- Agent ----

// AgentSpec declares an agent; its bearer token never enters Git, only its SHA-256.
type AgentSpec struct {
	// TokenSHA256 is the lowercase hex SHA-256 of the agent's bearer token.
	TokenSHA256 string `json:"tokenSHA256" yaml:"tokenSHA256"`
	// Suspend freezes the agent's assignments: it issues, renews and
	// deploys nothing until the field is removed (what it installed stays).
	Suspend bool `json:"suspend,omitempty" yaml:"suspend,omitempty"`
}

// ---- Certificate ----

// CertificateSpec is one certificate to issue and deploy.
type CertificateSpec struct {
	IssuerRef             string      `json:"issuerRef" yaml:"issuerRef"`
	CommonName            string      `json:"commonName,omitempty" yaml:"commonName,omitempty"`
	DNSNames              []string    `json:"dnsNames,omitempty" yaml:"dnsNames,omitempty"`
	IPAddresses           []string    `json:"ipAddresses,omitempty" yaml:"ipAddresses,omitempty"`
	URIs                  []string    `json:"uris,omitempty" yaml:"uris,omitempty"`
	EmailAddresses        []string    `json:"emailAddresses,omitempty" yaml:"emailAddresses,omitempty"`
	PrivateKey            PrivateKey  `json:"privateKey,omitempty" yaml:"privateKey,omitempty"`
	Duration              string      `json:"duration,omitempty" yaml:"duration,omitempty"`
	RenewBefore           string      `json:"renewBefore,omitempty" yaml:"renewBefore,omitempty"`
	RenewBeforePercentage *int        `json:"renewBeforePercentage,omitempty" yaml:"renewBeforePercentage,omitempty"`
	Usages                []string    `json:"usages,omitempty" yaml:"usages,omitempty"`
	Subject               *Subject    `json:"subject,omitempty" yaml:"subject,omitempty"`
	Deploy                *Deployment `json:"deploy,omitempty" yaml:"deploy,omitempty"`
	// Reissue is any string; changing it makes every deploying agent get a
	// new certificate with a new key (a forced rotation, a compromised
	// key), reviewed in the pull request like any change.
	Reissue string `json:"reissue,omitempty" yaml:"reissue,omitempty"`
	// Suspend stops renewals and deployments of the certificate until the
	// field is removed; what the agents installed stays.
	Suspend bool `json:"suspend,omitempty" yaml:"suspend,omitempty"`
}

// PrivateKey describes the key the agent generates on the host.
type PrivateKey struct {
	// Algorithm is ECDSA (default), RSA or Ed25519.
	Algorithm string `json:"algorithm,omitempty" yaml:"algorithm,omitempty"`
	// Size is the curve size for ECDSA (256, 384, 521) or modulus bits for RSA (2048..8192).
	Size int `json:"size,omitempty" yaml:"size,omitempty"`
	// RotationPolicy is Always (new key on every issuance, default) or Never.
	RotationPolicy string `json:"rotationPolicy,omitempty" yaml:"rotationPolicy,omitempty"`
}

// Subject holds the distinguished-name fields besides the common name.
type Subject struct {
	Organizations       []string `json:"organizations,omitempty" yaml:"organizations,omitempty"`
	OrganizationalUnits []string `json:"organizationalUnits,omitempty" yaml:"organizationalUnits,omitempty"`
	Countries           []string `json:"countries,omitempty" yaml:"countries,omitempty"`
	Provinces           []string `json:"provinces,omitempty" yaml:"provinces,omitempty"`
	Localities          []string `json:"localities,omitempty" yaml:"localities,omitempty"`
	StreetAddresses     []string `json:"streetAddresses,omitempty" yaml:"streetAddresses,omitempty"`
	PostalCodes         []string `json:"postalCodes,omitempty" yaml:"postalCodes,omitempty"`
	SerialNumber        string   `json:"serialNumber,omitempty" yaml:"serialNumber,omitempty"`
}

// Deployment says which agents install the certificate, where, and how to reload.
type Deployment struct {
	Agents        []string       `json:"agents,omitempty" yaml:"agents,omitempty"`
	AgentSelector *LabelSelector `json:"agentSelector,omitempty" yaml:"agentSelector,omitempty"`
	Files         DeployFiles    `json:"files" yaml:"files"`
	Reload        []string       `json:"reload,omitempty" yaml:"reload,omitempty"`
	Verify        *Verify        `json:"verify,omitempty" yaml:"verify,omitempty"`
}

// LabelSelector selects agents by labels; all matchLabels must match.
type LabelSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty" yaml:"matchLabels,omitempty"`
}

// DeployFiles are absolute paths on the agent host; at least one of the
// certificate's forms is set.
type DeployFiles struct {
	Cert      string `json:"cert,omitempty" yaml:"cert,omitempty"`
	Chain     string `json:"chain,omitempty" yaml:"chain,omitempty"`
	Fullchain string `json:"fullchain,omitempty" yaml:"fullchain,omitempty"`
	Key       string `json:"key,omitempty" yaml:"key,omitempty"`
	// Combined is key, certificate and chain in one PEM file (HAProxy).
	Combined string `json:"combined,omitempty" yaml:"combined,omitempty"`
	// DER is the certificate alone, DER encoded.
	DER string `json:"der,omitempty" yaml:"der,omitempty"`
	// PKCS12 is key, certificate and chain in a PKCS#12 file (AES-256,
	// PBKDF2-SHA-256), encrypted with the password in PKCS12PasswordFile,
	// a file on the agent host, with an optional PKCS12FriendlyName.
	PKCS12             string `json:"pkcs12,omitempty" yaml:"pkcs12,omitempty"`
	PKCS12PasswordFile string `json:"pkcs12PasswordFile,omitempty" yaml:"pkcs12PasswordFile,omitempty"`
	// PKCS12FriendlyName names the key entry (Java's alias).
	PKCS12FriendlyName string `json:"pkcs12FriendlyName,omitempty" yaml:"pkcs12FriendlyName,omitempty"`
	// JKS is a Java KeyStore with one private key entry (key, certificate
	// and chain) named JKSAlias (default: the certificate's name), with
	// the password in JKSPasswordFile, a file on the agent host.
	JKS             string `json:"jks,omitempty" yaml:"jks,omitempty"`
	JKSPasswordFile string `json:"jksPasswordFile,omitempty" yaml:"jksPasswordFile,omitempty"`
	JKSAlias        string `json:"jksAlias,omitempty" yaml:"jksAlias,omitempty"`
	// Mode is an octal file mode as a string, e.g. "0600".
	Mode  string `json:"mode,omitempty" yaml:"mode,omitempty"`
	Owner string `json:"owner,omitempty" yaml:"owner,omitempty"`
	Group string `json:"group,omitempty" yaml:"group,omitempty"`
	// Layout is how the agent installs the files: LayoutFiles (the
	// default) or LayoutSymlink.
	Layout string `json:"layout,omitempty" yaml:"layout,omitempty"`
}

// Install layouts (DeployFiles.Layout).
const (
	// LayoutFiles: each path is a regular file, replaced by its own
	// rename; a reader can see a new certificate with the old key while
	// the set is being replaced.
	LayoutFiles = "files"
	// LayoutSymlink: each path is a link through one "current" link into a
	// version directory; one rename flips the whole set. All paths must be
	// in one directory.
	LayoutSymlink = "symlink"
)

// Layouts are the values of DeployFiles.Layout.
var Layouts = []string{LayoutFiles, LayoutSymlink}

// Verify dials Address with SNI ServerName after a reload and compares the served certificate.
type Verify struct {
	Address    string `json:"address" yaml:"address"`
	ServerName string `json:"serverName,omitempty" yaml:"serverName,omitempty"`
}

// ---- AlertPolicy ----

// AlertPolicySpec holds alert thresholds and the channels to notify.
type AlertPolicySpec struct {
	CertificateExpiring *ExpiryThresholds `json:"certificateExpiring,omitempty" yaml:"certificateExpiring,omitempty"`
	// RenewalOverdueAfter: alert when a certificate is this long past its renewal time.
	RenewalOverdueAfter string `json:"renewalOverdueAfter,omitempty" yaml:"renewalOverdueAfter,omitempty"`
	// AgentOfflineAfter: alert when an agent has not been seen for this long.
	AgentOfflineAfter string          `json:"agentOfflineAfter,omitempty" yaml:"agentOfflineAfter,omitempty"`
	JobFailureRatio   *FailureRatio   `json:"jobFailureRatio,omitempty" yaml:"jobFailureRatio,omitempty"`
	IssuanceFailures  *CountThreshold `json:"issuanceFailures,omitempty" yaml:"issuanceFailures,omitempty"`
	ReconcileStalled  string          `json:"reconcileStalledAfter,omitempty" yaml:"reconcileStalledAfter,omitempty"`
	SourceStale       string          `json:"sourceStaleAfter,omitempty" yaml:"sourceStaleAfter,omitempty"`
	BackupTooOld      string          `json:"backupTooOldAfter,omitempty" yaml:"backupTooOldAfter,omitempty"`
	// ServedMismatchAfter: alert when an agent's service has served another
	// certificate than the one installed for this long (default 30m).
	ServedMismatchAfter string `json:"servedMismatchAfter,omitempty" yaml:"servedMismatchAfter,omitempty"`
	// Notify are the default channels: for alerts no route matches, and
	// for alerts about certops itself (which have no subject labels).
	Notify []string `json:"notify,omitempty" yaml:"notify,omitempty"`
	// Routes send the alerts about certificates and agents whose labels
	// match to other channels; see ChannelsFor.
	Routes           []AlertRoute `json:"routes,omitempty" yaml:"routes,omitempty"`
	RenotifyInterval string       `json:"renotifyInterval,omitempty" yaml:"renotifyInterval,omitempty"`
}

// AlertRoute sends the alerts whose subject carries every Match label
// (key and value) to the Notify channels.
type AlertRoute struct {
	Match  map[string]string `json:"match" yaml:"match"`
	Notify []string          `json:"notify" yaml:"notify"`
}

// ExpiryThresholds fire when time left drops below a duration or a fraction of lifetime.
type ExpiryThresholds struct {
	Warning  *ExpiryThreshold `json:"warning,omitempty" yaml:"warning,omitempty"`
	Critical *ExpiryThreshold `json:"critical,omitempty" yaml:"critical,omitempty"`
}

// ExpiryThreshold is a duration left and/or a fraction (0..1) of lifetime left; either triggers.
type ExpiryThreshold struct {
	Remaining         string   `json:"remaining,omitempty" yaml:"remaining,omitempty"`
	RemainingFraction *float64 `json:"remainingFraction,omitempty" yaml:"remainingFraction,omitempty"`
}

// FailureRatio fires when failed/total over Window exceeds Ratio (0..1) with at least MinJobs.
type FailureRatio struct {
	Ratio   float64 `json:"ratio" yaml:"ratio"`
	Window  string  `json:"window" yaml:"window"`
	MinJobs int     `json:"minJobs,omitempty" yaml:"minJobs,omitempty"`
}

// CountThreshold fires when more than Count events happen within Window.
type CountThreshold struct {
	Count  int    `json:"count" yaml:"count"`
	Window string `json:"window" yaml:"window"`
}

// ---- NotificationChannel ----

// NotificationChannelSpec is exactly one of Slack, SMTP, Webhook,
// Alertmanager, PagerDuty or Teams (the last three are in channels.go).
type NotificationChannelSpec struct {
	Slack        *SlackChannel        `json:"slack,omitempty" yaml:"slack,omitempty"`
	SMTP         *SMTPChannel         `json:"smtp,omitempty" yaml:"smtp,omitempty"`
	Webhook      *WebhookChannel      `json:"webhook,omitempty" yaml:"webhook,omitempty"`
	Alertmanager *AlertmanagerChannel `json:"alertmanager,omitempty" yaml:"alertmanager,omitempty"`
	PagerDuty    *PagerDutyChannel    `json:"pagerduty,omitempty" yaml:"pagerduty,omitempty"`
	Teams        *TeamsChannel        `json:"teams,omitempty" yaml:"teams,omitempty"`
}

// SlackChannel posts to an incoming webhook whose URL is read from a file.
type SlackChannel struct {
	WebhookURLFile string `json:"webhookURLFile" yaml:"webhookURLFile"`
	Channel        string `json:"channel,omitempty" yaml:"channel,omitempty"`
}

// SMTPChannel sends mail; the password is read from a file.
type SMTPChannel struct {
	Host         string   `json:"host" yaml:"host"`
	Port         int      `json:"port" yaml:"port"`
	From         string   `json:"from" yaml:"from"`
	To           []string `json:"to" yaml:"to"`
	StartTLS     *bool    `json:"startTLS,omitempty" yaml:"startTLS,omitempty"`
	Username     string   `json:"username,omitempty" yaml:"username,omitempty"`
	PasswordFile string   `json:"passwordFile,omitempty" yaml:"passwordFile,omitempty"`
	// TLS is SMTPTLSImplicit (TLS from the first byte, SMTPS) or
	// SMTPTLSStartTLS; empty: implicit on port 465, STARTTLS otherwise
	// (see TLSMode).
	TLS string `json:"tls,omitempty" yaml:"tls,omitempty"`
	// Auth is SMTPAuthPlain or SMTPAuthLogin; empty: what the server
	// offers, PLAIN preferred.
	Auth string `json:"auth,omitempty" yaml:"auth,omitempty"`
}

// WebhookChannel POSTs JSON to URL, signed with HMAC-SHA256 using a secret from a file.
type WebhookChannel struct {
	URL            string `json:"url" yaml:"url"`
	HMACSecretFile string `json:"hmacSecretFile,omitempty" yaml:"hmacSecretFile,omitempty"`
}

// ---- BackupPolicy ----

// BackupPolicySpec says when to back up, how long to keep backups and where to put them.
type BackupPolicySpec struct {
	// Schedule is a five-field cron expression (UTC).
	Schedule    string            `json:"schedule" yaml:"schedule"`
	Retention   BackupRetention   `json:"retention" yaml:"retention"`
	Destination BackupDestination `json:"destination" yaml:"destination"`
}

// BackupRetention keeps at most Count backups and/or none older than MaxAge.
type BackupRetention struct {
	Count  int    `json:"count,omitempty" yaml:"count,omitempty"`
	MaxAge string `json:"maxAge,omitempty" yaml:"maxAge,omitempty"`
}

// BackupDestination is exactly one of Directory or S3.
type BackupDestination struct {
	Directory string    `json:"directory,omitempty" yaml:"directory,omitempty"`
	S3        *S3Target `json:"s3,omitempty" yaml:"s3,omitempty"`
}

// S3Target is an S3-compatible bucket; credentials come from environment variables or files by reference.
type S3Target struct {
	Bucket             string `json:"bucket" yaml:"bucket"`
	Prefix             string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	Endpoint           string `json:"endpoint,omitempty" yaml:"endpoint,omitempty"`
	Region             string `json:"region,omitempty" yaml:"region,omitempty"`
	AccessKeyIDEnv     string `json:"accessKeyIDEnv,omitempty" yaml:"accessKeyIDEnv,omitempty"`
	SecretAccessKeyEnv string `json:"secretAccessKeyEnv,omitempty" yaml:"secretAccessKeyEnv,omitempty"`
	CredentialsFile    string `json:"credentialsFile,omitempty" yaml:"credentialsFile,omitempty"`
}
