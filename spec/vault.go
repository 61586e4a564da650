package spec

import "strings"

// VaultIssuer signs the agents' CSRs with a HashiCorp Vault (or OpenBao)
// PKI secrets engine: POST /v1/{mount}/sign/{role}.
type VaultIssuer struct {
	// Address is Vault's base URL, such as https://vault.example.com:8200.
	Address string `json:"address" yaml:"address"`
	// Mount is the path the PKI secrets engine is mounted at, such as pki.
	Mount string `json:"mount" yaml:"mount"`
	// Role is the PKI role that signs, such as certops.
	Role string `json:"role" yaml:"role"`
	// CABundleFile holds the CA certificates issued certificates must chain
	// to; it is also the trust for Vault's TLS server certificate.
	CABundleFile string `json:"caBundleFile" yaml:"caBundleFile"`
	// Auth is how certops logs in: exactly one of tokenFile or appRole.
	Auth VaultAuth `json:"auth" yaml:"auth"`
}

// VaultAuth is a Vault token read from a file, or an AppRole login.
type VaultAuth struct {
	// TokenFile holds a Vault token; it is re-read at each use, so a
	// rotated token is picked up without a restart.
	TokenFile string `json:"tokenFile,omitempty" yaml:"tokenFile,omitempty"`
	// AppRole logs in at auth/approle/login.
	AppRole *VaultAppRole `json:"appRole,omitempty" yaml:"appRole,omitempty"`
}

// VaultAppRole is an AppRole role ID and the file holding its secret ID.
type VaultAppRole struct {
	RoleID       string `json:"roleID" yaml:"roleID"`
	SecretIDFile string `json:"secretIDFile" yaml:"secretIDFile"`
}

// vault checks spec.vault.
func (c *checker) vault(v *VaultIssuer) {
	c.httpURL("spec.vault.address", v.Address, true)
	c.vaultPath("spec.vault.mount", v.Mount)
	if v.Role == "" {
		c.errorf("spec.vault.role", "required")
	} else if strings.Contains(v.Role, "/") || !isVaultSegment(v.Role) {
		c.errorf("spec.vault.role", "%q is not a Vault role name (letters, digits, '-', '_', '.')", v.Role)
	}
	c.requiredAbsPath("spec.vault.caBundleFile", v.CABundleFile)
	a := v.Auth
	c.exactlyOne("spec.vault.auth", []string{"tokenFile", "appRole"}, a.TokenFile != "", a.AppRole != nil)
	c.absPath("spec.vault.auth.tokenFile", a.TokenFile)
	if r := a.AppRole; r != nil {
		if r.RoleID == "" {
			c.errorf("spec.vault.auth.appRole.roleID", "required")
		} else if !isVaultSegment(r.RoleID) {
			c.errorf("spec.vault.auth.appRole.roleID", "is not a Vault role ID (letters, digits, '-', '_', '.')")
		}
		c.requiredAbsPath("spec.vault.auth.appRole.secretIDFile", r.SecretIDFile)
	}
}

// vaultPath checks a mount path: segments of isVaultSegment joined by '/'.
func (c *checker) vaultPath(path, s string) {
	if s == "" {
		c.errorf(path, "required")
		return
	}
	for seg := range strings.SplitSeq(s, "/") {
		if !isVaultSegment(seg) {
			c.errorf(path, "%q is not a Vault mount path (segments of letters, digits, '-', '_', '.' joined by '/', no leading or trailing '/')", s)
			return
		}
	}
}

// isVaultSegment reports whether s is a non-empty path segment of letters,
// digits, '-', '_' and '.', other than "." and "..".
func isVaultSegment(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
