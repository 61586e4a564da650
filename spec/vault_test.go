package spec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestVaultIssuer(t *testing.T) {
	const head = "apiVersion: certops/v1\nkind: Issuer\nmetadata: {name: vault}\nspec:\n  vault:\n"
	tests := []struct {
		name, body string
		want       []string
	}{
		{"token file", `
    address: https://vault.example.com:8200
    mount: pki/int
    role: certops
    caBundleFile: /etc/certops/vault/ca.pem
    auth: {tokenFile: /run/secrets/vault-token}`, nil},
		{"approle on a loopback dev server", `
    address: http://127.0.0.1:8200
    mount: pki
    role: certops
    caBundleFile: /etc/certops/vault/ca.pem
    auth: {appRole: {roleID: 6a1c2e0b-certops, secretIDFile: /etc/certops/vault/secret-id}}`, nil},
		{"everything missing", `
    auth: {}`, []string{
			`x.yaml:5: spec.vault.address: required`,
			`x.yaml:5: spec.vault.caBundleFile: required`,
			`x.yaml:5: spec.vault.mount: required`,
			`x.yaml:5: spec.vault.role: required`,
			`x.yaml:6: spec.vault.auth: one of tokenFile, appRole is required`,
		}},
		{"bad values", `
    address: http://vault.example.com
    mount: /pki/
    role: a/b
    caBundleFile: ca.pem
    auth:
      tokenFile: hvs.CAESIJ
      appRole: {roleID: "has space", secretIDFile: s3cret}`, []string{
			`x.yaml:6: spec.vault.address: must use https: http is allowed only for loopback hosts, and "vault.example.com" is not one`,
			`x.yaml:7: spec.vault.mount: "/pki/" is not a Vault mount path (segments of letters, digits, '-', '_', '.' joined by '/', no leading or trailing '/')`,
			`x.yaml:8: spec.vault.role: "a/b" is not a Vault role name (letters, digits, '-', '_', '.')`,
			`x.yaml:9: spec.vault.caBundleFile: "ca.pem" is not an absolute path`,
			`x.yaml:10: spec.vault.auth: only one of tokenFile, appRole may be set`,
			`x.yaml:11: spec.vault.auth.tokenFile: is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)`,
			`x.yaml:12: spec.vault.auth.appRole.roleID: is not a Vault role ID (letters, digits, '-', '_', '.')`,
			`x.yaml:12: spec.vault.auth.appRole.secretIDFile: is not an absolute path; give the path of the file that holds the secret, not the secret itself (value not shown: it may be a secret)`,
		}},
		{"two issuer types", `
    address: https://vault.example.com
    mount: pki
    role: certops
    caBundleFile: /etc/ca.pem
    auth: {tokenFile: /run/token}
  localCA: {certFile: /etc/ca.crt, keyFile: /etc/ca.key}`, []string{
			`x.yaml:4: spec: only one of localCA, acme, external, vault may be set`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := ParseFile("x.yaml", []byte(head+strings.TrimPrefix(tt.body, "\n")+"\n"))
			if diff := cmp.Diff(errorStrings(t, errs), tt.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("errors (-got +want):\n%s", diff)
			}
		})
	}
}
