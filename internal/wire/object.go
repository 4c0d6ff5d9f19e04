package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// maxKnown is the most members a decoder may ask members for.
const maxKnown = 16

// object holds the members of a JSON object that a decoder asked for, each
// as its raw JSON text, or nil when absent.
type object struct {
	known []string
	vals  [maxKnown]jsontext.Value
}

// get returns the member named name, nil if the object has none.
func (o *object) get(name string) jsontext.Value {
	if i := o.index(name); i >= 0 {
		return o.vals[i]
	}
	return nil
}

func (o *object) index(name string) int {
	for i, k := range o.known {
		if k == name {
			return i
		}
	}
	return -1
}

// members reads b as one JSON object and returns the values of the members
// named in known (at most maxKnown), each as its raw JSON text; other
// members are skipped. It is strict where encoding/json is lenient, so that
// every reader of a message sees the same message as this one:
//
//   - b must be valid UTF-8 throughout, and no string may hold an escaped
//     lone surrogate ("\ud800"), which is not a character: BadUTF8. (encoding/json
//     turns both into U+FFFD, so two different worker ids could become one.)
//   - A name may appear once, at any depth: DuplicateKey. (encoding/json
//     keeps the last value, Python's json module too, but other readers keep
//     the first.)
//   - Names are exact and case-sensitive. A member whose name differs from a
//     known one only in case or by Unicode case folding ("N", "PI_APPROX",
//     "kernel" with a Kelvin sign) is FoldedKey, not an unknown member to
//     skip: encoding/json would take it for the known one, the README's
//     Python reader would not.
//   - Nothing but JSON's white space (space, tab, CR, LF) may surround the
//     object: NotJSON.
//
// The values may share b's memory.
func members(b []byte, known ...string) (object, error) {
	if len(known) > maxKnown {
		panic("wire: members: more than maxKnown names")
	}
	o := object{known: known}
	if plainMembers(b, &o) {
		return o, nil
	}
	return decodeMembers(b, known)
}

// decodeMembers is members with jsontext's decoder, for any input.
func decodeMembers(b []byte, known []string) (object, error) {
	o := object{known: known}
	if !utf8.Valid(b) {
		return o, reject(BadUTF8, "not valid UTF-8")
	}
	b = bytes.Trim(b, " \t\r\n") // JSON's white space, not Unicode's: Python's json.loads refuses "\v" or U+00A0 around the object
	if len(b) == 0 || b[0] != '{' {
		return o, reject(NotJSON, "not a JSON object")
	}
	dec := jsontext.NewDecoder(bytes.NewReader(b)) // duplicate names and invalid UTF-8 are errors by default
	if _, err := dec.ReadToken(); err != nil {
		return o, syntaxError(err)
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return o, syntaxError(err)
		}
		name := tok.String()
		v, err := dec.ReadValue()
		if err != nil {
			return o, syntaxError(err)
		}
		exact, folded := lookup(name, known)
		switch {
		case exact:
			o.vals[o.index(name)] = v.Clone()
		case folded != "":
			return o, reject(FoldedKey, "member %q is not %q: names are case-sensitive", name, folded)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return o, syntaxError(err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return o, reject(NotJSON, "data after the object")
	}
	return o, nil
}

// plainMembers is members for the objects workers write, without a
// decoder: one flat object of known members, each once, whose strings are
// printable ASCII without escapes and whose values are strings, numbers,
// true, false or null, with JSON white space between. It fills o and
// reports true only for such an object, which members' decoder would read
// the same way (FuzzPlainMembers checks that); for anything else, valid or
// not, it reports false and the decoder judges.
func plainMembers(b []byte, o *object) bool {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	var seen uint32
	for {
		j := plainString(b, i)
		if j < 0 {
			return false
		}
		k := o.index(string(b[i+1 : j-1]))
		if k < 0 || seen&(1<<k) != 0 { // unknown (perhaps folded) or twice: the decoder's
			return false
		}
		seen |= 1 << k
		if i = skipSpace(b, j); i == len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if j = plainValue(b, i); j < 0 {
			return false
		}
		o.vals[k] = b[i:j]
		if i = skipSpace(b, j); i == len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// plainString returns the index after the string starting at b[i] if it is
// printable ASCII without escapes, or -1.
func plainString(b []byte, i int) int {
	if i == len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20 || c > 0x7e || c == '\\':
			return -1
		}
	}
	return -1
}

// plainValue returns the index after the value starting at b[i] if it is a
// plain string, a number, true, false or null, or -1.
func plainValue(b []byte, i int) int {
	if i == len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return plainString(b, i)
	case c == '-' || '0' <= c && c <= '9':
		return number(b, i)
	}
	for _, lit := range []string{"true", "false", "null"} {
		if bytes.HasPrefix(b[i:], []byte(lit)) {
			return i + len(lit)
		}
	}
	return -1
}

// number returns the index after the JSON number starting at b[i], or -1:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func number(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i == len(b):
		return -1
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// lookup tells whether name is one of known, or else which known name it
// equals under Unicode case folding.
func lookup(name string, known []string) (exact bool, folded string) {
	for _, k := range known {
		if name == k {
			return true, ""
		}
		if strings.EqualFold(name, k) {
			folded = k
		}
	}
	return false, folded
}

// syntaxError names the reason for a jsontext error.
func syntaxError(err error) *Error {
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName):
		return reject(DuplicateKey, "%v", err)
	case strings.Contains(err.Error(), "surrogate"), strings.Contains(err.Error(), "UTF-8"):
		return reject(BadUTF8, "%v", err)
	}
	return reject(NotJSON, "%v", err)
}

// str decodes a JSON string value.
func str(v jsontext.Value) (string, bool) {
	if v.Kind() != '"' {
		return "", false
	}
	if bytes.IndexByte(v, '\\') < 0 { // valid JSON text: the characters between the quotes
		return string(v[1 : len(v)-1]), true
	}
	s, err := jsontext.AppendUnquote(nil, v)
	return string(s), err == nil
}

// printable reports whether s is 1 to max bytes of printable characters
// (letters, marks, numbers, punctuation, symbols and the ASCII space): no
// control, format or invisible separator characters, which could hide one
// id behind another in a log or a terminal.
func printable(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}
