package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
)

// canonicalize returns the JSON value b, as json.Marshal writes it (compact,
// valid), with the members of every object sorted by key: byte for byte
// what decoding b into any (numbers kept as written) and marshalling that
// again gives, without building that tree. Strings, numbers and literals
// are copied as written, which is what re-marshalling them would write:
// json.Marshal escapes a string the same way every time.
func canonicalize(b []byte) ([]byte, error) {
	c := canonicalizer{in: b, out: make([]byte, 0, len(b))}
	if err := c.value(); err != nil {
		return nil, err
	}
	if c.pos != len(b) {
		return nil, errors.New("spec: canonical JSON: trailing data")
	}
	return c.out, nil
}

type canonicalizer struct {
	in  []byte
	pos int
	out []byte
}

var errMalformed = errors.New("spec: canonical JSON: input is not compact JSON")

// value copies the value at pos to out, objects sorted.
func (c *canonicalizer) value() error {
	if c.pos >= len(c.in) {
		return errMalformed
	}
	switch c.in[c.pos] {
	case '{':
		return c.object()
	case '[':
		c.out = append(c.out, '[')
		c.pos++
		for first := true; ; first = false {
			if c.pos >= len(c.in) {
				return errMalformed
			}
			if c.in[c.pos] == ']' {
				c.out = append(c.out, ']')
				c.pos++
				return nil
			}
			if !first {
				if c.in[c.pos] != ',' {
					return errMalformed
				}
				c.out = append(c.out, ',')
				c.pos++
			}
			if err := c.value(); err != nil {
				return err
			}
		}
	case '"':
		end, err := c.stringEnd(c.pos)
		if err != nil {
			return err
		}
		c.out = append(c.out, c.in[c.pos:end]...)
		c.pos = end
		return nil
	default: // a number, true, false or null
		end := c.pos
		for end < len(c.in) && isLiteralByte(c.in[end]) {
			end++
		}
		if end == c.pos {
			return errMalformed
		}
		c.out = append(c.out, c.in[c.pos:end]...)
		c.pos = end
		return nil
	}
}

// member is one member of an object: its key unescaped (the sort key) and
// where its canonical bytes ("key":value) were written in out.
type member struct {
	key        []byte
	start, end int
}

func (c *canonicalizer) object() error {
	c.pos++ // {
	objStart := len(c.out)
	var members []member
	for first := true; ; first = false {
		if c.pos >= len(c.in) {
			return errMalformed
		}
		if c.in[c.pos] == '}' {
			c.pos++
			break
		}
		if !first {
			if c.in[c.pos] != ',' {
				return errMalformed
			}
			c.pos++
		}
		if c.pos >= len(c.in) || c.in[c.pos] != '"' {
			return errMalformed
		}
		keyEnd, err := c.stringEnd(c.pos)
		if err != nil {
			return err
		}
		rawKey := c.in[c.pos:keyEnd]
		key := rawKey[1 : len(rawKey)-1]
		if bytes.IndexByte(key, '\\') >= 0 { // escaped: sort by what it says
			var unescaped string
			if err := json.Unmarshal(rawKey, &unescaped); err != nil {
				return errMalformed
			}
			key = []byte(unescaped)
		}
		c.pos = keyEnd
		if c.pos >= len(c.in) || c.in[c.pos] != ':' {
			return errMalformed
		}
		c.pos++
		start := len(c.out)
		c.out = append(c.out, rawKey...)
		c.out = append(c.out, ':')
		if err := c.value(); err != nil {
			return err
		}
		members = append(members, member{key: key, start: start, end: len(c.out)})
	}
	// As encoding/json keeps the last of duplicate keys when decoding.
	slices.SortStableFunc(members, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	members = compactLast(members)
	sorted := make([]byte, 0, len(c.out)-objStart+2+len(members))
	sorted = append(sorted, '{')
	for i, m := range members {
		if i > 0 {
			sorted = append(sorted, ',')
		}
		sorted = append(sorted, c.out[m.start:m.end]...)
	}
	sorted = append(sorted, '}')
	c.out = append(c.out[:objStart], sorted...)
	return nil
}

// compactLast keeps the last member of each run of equal keys.
func compactLast(ms []member) []member {
	out := ms[:0]
	for i, m := range ms {
		if i+1 < len(ms) && bytes.Equal(ms[i+1].key, m.key) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// stringEnd returns the index just past the string that starts at i.
func (c *canonicalizer) stringEnd(i int) (int, error) {
	for j := i + 1; j < len(c.in); j++ {
		switch c.in[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errMalformed
}

// isLiteralByte reports whether b may be part of a number or of true,
// false or null.
func isLiteralByte(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || b == '-' || b == '+' || b == '.'
}
