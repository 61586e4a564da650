package spec

import (
	"cmp"
	"fmt"
	"slices"
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
//   - an AlertPolicy's notify entries name existing NotificationChannels.
//
// Errors are sorted by file, line and message.
func Validate(objs []*Object) ErrorList {
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
	for _, o := range objs {
		if first, dup := byKey[o.Key()]; dup {
			at(o, "metadata.name", "%s %q is already defined at %s", o.Kind, o.Name, first.position("metadata.name"))
			continue
		}
		byKey[o.Key()] = o
		if o.Kind == KindAlertPolicy || o.Kind == KindBackupPolicy {
			if first, dup := singleton[o.Kind]; dup {
				at(o, "metadata.name", "only one %s is allowed, another is defined at %s", o.Kind, first.position("metadata.name"))
				continue
			}
			singleton[o.Kind] = o
		}
	}

	exists := func(k Kind, name string) bool { _, ok := byKey[Key{Kind: k, Name: name}]; return ok }
	for _, o := range objs {
		switch s := o.Spec.(type) {
		case *CertificateSpec:
			if s.IssuerRef != "" {
				if iss, ok := byKey[Key{KindIssuer, s.IssuerRef}]; !ok {
					at(o, "spec.issuerRef", "Issuer %q does not exist", s.IssuerRef)
				} else if usesHTTP01(iss) && s.Deploy == nil {
					at(o, "spec.issuerRef", "Issuer %q answers http-01 challenges on the deploying agents, so spec.deploy is required", s.IssuerRef)
				}
			}
			if s.Deploy != nil {
				for i, a := range s.Deploy.Agents {
					if !exists(KindAgent, a) {
						at(o, fmt.Sprintf("spec.deploy.agents[%d]", i), "Agent %q does not exist", a)
					}
				}
			}
		case *AlertPolicySpec:
			for i, n := range s.Notify {
				if !exists(KindNotificationChannel, n) {
					at(o, fmt.Sprintf("spec.notify[%d]", i), "NotificationChannel %q does not exist", n)
				}
			}
		}
	}
	errs.Sort()
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
