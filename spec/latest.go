package spec

import "sync/atomic"

// Latest holds the State most recently loaded in this process, so that
// other parts of the process (the agent API's snapshot of the applied
// objects) share its decoded objects instead of decoding copies of their
// own. It is safe for concurrent use; the zero value holds nothing.
type Latest struct{ state atomic.Pointer[State] }

// Set makes s the latest State. Its objects must not change afterwards.
func (l *Latest) Set(s State) {
	for _, o := range s.Objects {
		o.Hash() // cached now, so concurrent readers never compute it
	}
	l.state.Store(&s)
}

// Current returns the latest State, or nil when there is none (or l is
// nil): look up a series of objects in it to see one State throughout.
func (l *Latest) Current() *State {
	if l == nil {
		return nil
	}
	return l.state.Load()
}

// WithHash returns the object of key k when its content hash is hash (the
// same labels, annotations and spec), else nil. A nil State has none.
func (s *State) WithHash(k Key, hash string) *Object {
	if s == nil {
		return nil
	}
	if o := s.Objects[k]; o != nil && o.Hash() == hash {
		return o
	}
	return nil
}
