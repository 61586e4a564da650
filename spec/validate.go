package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Validate runs the checks that need a whole revision, over the objects of
// every file (as returned by ParseFile):
//
//   - names are unique per kind; the second definition is reported with the
//     location of the first;
//   - there is at most one AlertPolicy and at most one BackupPolicy, since
//     `certops rules` and `certops backup` act on "the" policy;
//   - a Certificate's issuerRef names an existing Issuer, its deploy.agents
//     name existing Agents, and it has a deploy block when its issuer answers
//     ACME http-01 challenges (the deploying agents serve them);
//   - a Revocation's certificate names an existing Certificate;
//   - an AlertPolicy's notify entries, its own and its routes', name
//     existing NotificationChannels;
//   - no two Agents have the same tokenSHA256 (a token must identify one
//     agent), reported at each of them;
//   - a TrustBundle's issuer sources and deploy.agents name existing
//     Issuers and Agents;
//   - no two Certificates or TrustBundles write the same file path on an
//     agent both deploy to (see Deployment.Selects), reported at each of
//     them.
//
// A reference that is not a valid name is reported by ParseFile, not again
// here as a dangling reference.
//
// Errors are sorted by file, line and message.
func Validate(objs []*Object) ErrorList { return validate(objs, false) }

// ValidatePart validates objs as part of a revision whose other objects
// are not known (one file of it): as Validate, except that a reference to
// an object not among objs is not an error.
func ValidatePart(objs []*Object) ErrorList { return validate(objs, true) }

func validate(objs []*Object, part bool) ErrorList {
	objs = slices.Clone(objs)
	slices.SortStableFunc(objs, func(a, b *Object) int {
		return cmp.Or(cmp.Compare(a.Source.File, b.Source.File), cmp.Compare(a.Source.Line, b.Source.Line))
	})
	var errs ErrorList
	at := func(o *Object, path, format string, args ...any) {
		errs = append(errs, Error{File: o.Source.File, Line: o.line(path), Message: path + ": " + fmt.Sprintf(format, args...)})
	}

	byKey := make(map[Key]*Object, len(objs))
	singleton := map[Kind]*Object{}
	// unique are the first definitions: a second one is reported as such,
	// not again as a clash with the first.
	unique := make([]*Object, 0, len(objs))
	for _, o := range objs {
		if first, dup := byKey[o.Key()]; dup {
			at(o, "metadata.name", "%s %q is already defined at %s", o.Kind, o.Name, first.position("metadata.name"))
			continue
		}
		byKey[o.Key()] = o
		unique = append(unique, o)
		if o.Kind == KindAlertPolicy || o.Kind == KindBackupPolicy {
			if first, dup := singleton[o.Kind]; dup {
				at(o, "metadata.name", "only one %s is allowed, another is defined at %s", o.Kind, first.position("metadata.name"))
				continue
			}
			singleton[o.Kind] = o
		}
	}

	exists := func(k Kind, name string) bool { _, ok := byKey[Key{Kind: k, Name: name}]; return ok || part }
	for _, o := range objs {
		switch s := o.Spec.(type) {
		case *CertificateSpec:
			if isDNSLabel(s.IssuerRef) {
				if iss, ok := byKey[Key{KindIssuer, s.IssuerRef}]; !ok {
					if !part {
						at(o, "spec.issuerRef", "Issuer %q does not exist", s.IssuerRef)
					}
				} else if usesHTTP01(iss) && s.Deploy == nil {
					at(o, "spec.issuerRef", "Issuer %q answers http-01 challenges on the deploying agents, so spec.deploy is required", s.IssuerRef)
				}
			}
			if s.Deploy != nil {
				for i, a := range s.Deploy.Agents {
					if isDNSLabel(a) && !exists(KindAgent, a) {
						at(o, fmt.Sprintf("spec.deploy.agents[%d]", i), "Agent %q does not exist", a)
					}
				}
			}
		case *TrustBundleSpec:
			errs = append(errs, trustBundleRefs(o, s, exists)...)
		case *RevocationSpec:
			if isDNSLabel(s.Certificate) && !exists(KindCertificate, s.Certificate) {
				at(o, "spec.certificate", "Certificate %q does not exist (a Revocation names a Certificate of the same revision)", s.Certificate)
			}
		case *AlertPolicySpec:
			for i, n := range s.Notify {
				if isDNSLabel(n) && !exists(KindNotificationChannel, n) {
					at(o, fmt.Sprintf("spec.notify[%d]", i), "NotificationChannel %q does not exist", n)
				}
			}
			for i, r := range s.Routes {
				for j, n := range r.Notify {
					if isDNSLabel(n) && !exists(KindNotificationChannel, n) {
						at(o, fmt.Sprintf("spec.routes[%d].notify[%d]", i, j), "NotificationChannel %q does not exist", n)
					}
				}
			}
		}
	}
	errs = append(errs, sharedTokens(unique)...)
	errs = append(errs, sharedFiles(unique)...)
	errs.Sort()
	return errs
}

// sharedTokens reports Agents whose tokenSHA256 another Agent has too.
// Hashes ParseFile rejects are left to it.
func sharedTokens(objs []*Object) ErrorList {
	byToken := map[string][]*Object{}
	var dups []string
	for _, o := range objs {
		if a := o.Agent(); a != nil && isLowerHex64(a.TokenSHA256) && a.TokenSHA256 != emptySHA256 {
			if len(byToken[a.TokenSHA256]) == 1 {
				dups = append(dups, a.TokenSHA256)
			}
			byToken[a.TokenSHA256] = append(byToken[a.TokenSHA256], o)
		}
	}
	var errs ErrorList
	for _, token := range dups {
		agents := byToken[token]
		for _, o := range agents {
			var others []string
			for _, other := range agents {
				if other != o {
					others = append(others, fmt.Sprintf("Agent %q at %s", other.Name, other.position("spec.tokenSHA256")))
				}
			}
			errs = append(errs, Error{File: o.Source.File, Line: o.line("spec.tokenSHA256"), Message: fmt.Sprintf(
				"spec.tokenSHA256: is also the token hash of %s; neither agent would be let in until each has its own token", strings.Join(others, ", "))})
		}
	}
	return errs
}

// deployFile is one file path a Certificate writes: field is "cert",
// "chain", "fullchain", "key", "combined", "der", "pkcs12" or "jks".
type deployFile struct {
	field, path string
}

func deployFiles(f *DeployFiles) []deployFile {
	out := make([]deployFile, 0, 4)
	for _, df := range [...]deployFile{{"cert", f.Cert}, {"chain", f.Chain}, {"fullchain", f.Fullchain}, {"key", f.Key},
		{"combined", f.Combined}, {"der", f.DER}, {"pkcs12", f.PKCS12}, {"jks", f.JKS}} {
		if df.path != "" {
			out = append(out, df)
		}
	}
	return out
}

// sharedFiles reports pairs of Certificates that write the same file path
// on an agent both deploy to: whichever is installed last overwrites the
// other. Each pair is reported once per path at each certificate, naming
// one such agent and how many more there are. Only paths that several
// certificates name are looked at agent by agent, so the check stays cheap
// for a large fleet.
func sharedFiles(objs []*Object) ErrorList {
	type writer struct {
		cert  *Object
		field string
	}
	first := make(map[string]writer, 2*len(objs))
	shared := map[string][]writer{}
	var sharedOrder []string
	for _, o := range objs {
		_, files := writtenFiles(o)
		for _, f := range files {
			w, taken := first[f.path]
			switch {
			case !taken:
				first[f.path] = writer{o, f.field}
			case w.cert == o:
				// within one certificate: ParseFile reports it
			default:
				if shared[f.path] == nil {
					shared[f.path] = []writer{w}
					sharedOrder = append(sharedOrder, f.path)
				}
				shared[f.path] = append(shared[f.path], writer{o, f.field})
			}
		}
	}
	if len(shared) == 0 {
		return nil
	}

	ix := NewAgentIndex()
	for _, o := range objs {
		if o.Kind == KindAgent {
			ix.Add(o.Name, o.Labels)
		}
	}
	targets := map[*Object][]string{}
	targetsOf := func(o *Object) []string {
		t, ok := targets[o]
		if !ok {
			d, _ := writtenFiles(o)
			t = ix.Targets(d)
			targets[o] = t
		}
		return t
	}
	type clash struct {
		a, b writer
	}
	type seen struct {
		agent string
		more  int
	}
	var errs ErrorList
	owner := map[string]writer{} // agent → first writer of the path there
	for _, path := range sharedOrder {
		clear(owner)
		clashes := map[clash]*seen{}
		var order []clash
		for _, w := range shared[path] {
			for _, agent := range targetsOf(w.cert) {
				first, taken := owner[agent]
				if !taken {
					owner[agent] = w
					continue
				}
				if first.cert == w.cert {
					continue
				}
				k := clash{first, w}
				if s := clashes[k]; s != nil {
					s.more++
				} else {
					clashes[k] = &seen{agent: agent}
					order = append(order, k)
				}
			}
		}
		for _, k := range order {
			s := clashes[k]
			where := fmt.Sprintf("Agent %q", s.agent)
			if s.more > 0 {
				where += fmt.Sprintf(" (and %d more)", s.more)
			}
			report := func(w, other writer) {
				fpath := "spec.deploy.files." + w.field
				errs = append(errs, Error{File: w.cert.Source.File, Line: w.cert.line(fpath), Message: fmt.Sprintf(
					"%s: %q is also the %s path of %s %q (%s) on %s; the two would overwrite each other there",
					fpath, path, other.field, other.cert.Kind, other.cert.Name, other.cert.position("spec.deploy.files."+other.field), where)})
			}
			report(k.b, k.a)
			report(k.a, k.b)
		}
	}
	return errs
}

func usesHTTP01(issuer *Object) bool {
	s := issuer.Issuer()
	return s != nil && s.ACME != nil && s.ACME.Challenge.HTTP01 != nil
}

// position is FILE:LINE of a field path of o.
func (o *Object) position(path string) string {
	return fmt.Sprintf("%s:%d", o.Source.File, o.line(path))
}
