package spec

import "testing"

func TestLatest(t *testing.T) {
	var nilLatest *Latest
	k := Key{Kind: KindAgent, Name: "web-01"}
	if nilLatest.Current().WithHash(k, "x") != nil {
		t.Error("a nil Latest returned an object")
	}
	var l Latest
	if l.Current().WithHash(k, "x") != nil {
		t.Error("an empty Latest returned an object")
	}
	o := &Object{Kind: KindAgent, Name: "web-01", Labels: map[string]string{"role": "web"},
		Spec: &AgentSpec{TokenSHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}
	l.Set(State{Objects: map[Key]*Object{k: o}})
	cur := l.Current()
	if got := cur.WithHash(k, o.Hash()); got != o {
		t.Errorf("WithHash(%s, its hash) = %p, want %p", k, got, o)
	}
	if got := cur.WithHash(k, "another hash"); got != nil {
		t.Error("an object with other content was returned")
	}
	if got := cur.WithHash(Key{Kind: KindCertificate, Name: "web-01"}, o.Hash()); got != nil {
		t.Error("an object of another kind was returned")
	}
	l.Set(State{Objects: map[Key]*Object{}})
	if cur.WithHash(k, o.Hash()) != o || l.Current().WithHash(k, o.Hash()) != nil {
		t.Error("a State taken before Set changed, or the new one still has the object")
	}
}
