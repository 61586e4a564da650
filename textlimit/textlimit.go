// Package textlimit is the one set of rules for strings that cross a trust
// boundary or are stored: they are valid UTF-8, hold no control characters
// where they make no sense (never a NUL, which Postgres refuses in text),
// and are bounded. Check refuses a string that breaks a rule (for input a
// client sends, which gets a 400); Bound repairs one (for text certops
// stores or sends itself, such as error messages and command output).
//
// It has no dependencies, so the agent binary links it too.
package textlimit

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxMessage bounds every stored or notified message: a deployment's last
// error, a revision's errors, a condition's message, a report's error.
const MaxMessage = 4096

// Check reports why s is not acceptable as a field of at most max bytes:
// invalid UTF-8, a control character (tab, newline and carriage return are
// allowed when multiline), or too long. The error names no field; callers
// prefix it.
func Check(s string, max int, multiline bool) error {
	if len(s) > max {
		return fmt.Errorf("is %d bytes long; the limit is %d", len(s), max)
	}
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !validAt(s, i):
			return fmt.Errorf("is not valid UTF-8 (at byte %d)", i)
		case unicode.IsControl(r) && !(multiline && isLineSpace(r)):
			return fmt.Errorf("holds the control character %s (at byte %d)", strconv.QuoteRune(r), i)
		}
	}
	return nil
}

// validAt reports whether the U+FFFD at s[i] is really encoded there (and
// not an invalid byte that range decoded as RuneError).
func validAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 3
}

func isLineSpace(r rune) bool { return r == '\t' || r == '\n' || r == '\r' }

// Clean returns s as valid UTF-8 without control characters: invalid bytes
// and control characters (but tab, newline and carriage return when
// multiline) become U+FFFD, NUL bytes are dropped.
func Clean(s string, multiline bool) string {
	if Check(s, len(s), multiline) == nil {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch {
		case r == 0:
		case r == utf8.RuneError && !validAt(s, i):
			b.WriteRune(utf8.RuneError)
		case unicode.IsControl(r) && !(multiline && isLineSpace(r)):
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Truncate returns s if it is at most max bytes, and otherwise its longest
// prefix that ends on a UTF-8 boundary and, followed by the marker
// "… (N bytes more)", fits in max bytes.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	marker := func(n int) string { return "… (" + strconv.Itoa(n) + " bytes more)" }
	cut := max - len(marker(len(s))) // the marker never gets longer than this
	withMarker := cut >= 0
	if !withMarker {
		cut = max // no room for the marker
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if !withMarker {
		return s[:cut]
	}
	return s[:cut] + marker(len(s)-cut)
}

// Bound is s made safe to store and send: Clean (multiline) and Truncate to
// max bytes.
func Bound(s string, max int) string { return Truncate(Clean(s, true), max) }

// Message is Bound(s, MaxMessage).
func Message(s string) string { return Bound(s, MaxMessage) }
