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

// members reads b as one JSON object and returns the values of the members
// named in known, each as its raw JSON text; other members are skipped. It
// is strict where encoding/json is lenient, so that every reader of a
// message sees the same message as this one:
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
//   - Nothing but white space may follow the object: NotJSON.
func members(b []byte, known ...string) (map[string]jsontext.Value, error) {
	if !utf8.Valid(b) {
		return nil, reject(BadUTF8, "not valid UTF-8")
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, reject(NotJSON, "not a JSON object")
	}
	dec := jsontext.NewDecoder(bytes.NewReader(b)) // duplicate names and invalid UTF-8 are errors by default
	if _, err := dec.ReadToken(); err != nil {
		return nil, syntaxError(err)
	}
	got := make(map[string]jsontext.Value, len(known))
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, syntaxError(err)
		}
		name := tok.String()
		v, err := dec.ReadValue()
		if err != nil {
			return nil, syntaxError(err)
		}
		exact, folded := lookup(name, known)
		switch {
		case exact:
			got[name] = v.Clone()
		case folded != "":
			return nil, reject(FoldedKey, "member %q is not %q: names are case-sensitive", name, folded)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, syntaxError(err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, reject(NotJSON, "data after the object")
	}
	return got, nil
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
