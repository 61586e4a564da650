package agentapi

import (
	"reflect"
	"testing"

	"github.com/certops/certops/spec"
)

// Every field of deploy.files reaches the agent: a field added to
// spec.DeployFiles but not passed on would be silently dropped.
func TestAssignmentCarriesEveryDeployFilesField(t *testing.T) {
	var files spec.DeployFiles
	v := reflect.ValueOf(&files).Elem()
	for i := range v.NumField() {
		v.Field(i).SetString(v.Type().Field(i).Name)
	}
	a := baseAssignment("shop", &spec.CertificateSpec{Deploy: &spec.Deployment{Files: files}})
	got := reflect.ValueOf(a.Files)
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		f := got.FieldByName(name)
		if !f.IsValid() || f.String() != name {
			t.Errorf("agentproto.Files.%s = %v, want %q from spec.DeployFiles.%s", name, f, name, name)
		}
	}
}
