package wire

import (
	"bytes"
	"testing"
)

// FuzzPlainMembers checks plainMembers against the decoder: whatever it
// reads, the decoder reads alike, member for member, for the members of
// entries and of reports.
func FuzzPlainMembers(f *testing.F) {
	entry := EncodeEntry(Entry{Job: "0123456789abcdef", Worker: "w-1", Seq: 7, N: 1 << 20, Hits: 823550,
		Seed: "00000000000000c0", Kernel: "avx512", Seconds: 0.0125, Cells: 1024})
	for _, s := range []string{
		string(entry), ` {"n": 1000000, "pi_approx": 3.141592} `, "{\n\t\"n\":1e6,\r\"pi_approx\":-0.5E+2}",
		`{}`, `{"n":1,"n":2}`, `{"N":1}`, `{"n":01}`, `{"n":1.}`, `{"n":-}`, `{"n":1e}`, `{"n":true,"v":null,"worker":false}`,
		`{"n":tru}`, `{"n":nullx}`, `{"worker":"a\"b"}`, `{"worker":"a\u0041"}`, `{"x":1}`, `{"n":[1]}`, `{"n":{"a":1}}`,
		`{"n":1,}`, `{"n":1}x`, `{"n" 1}`, "{\"worker\":\"\x7f\"}", "{\"worker\":\"\xe2\x82\xac\"}", "\v{\"n\":1}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, known := range [][]string{entryMembers, fields} {
			plain := object{known: known}
			if !plainMembers(b, &plain) {
				continue
			}
			dec, err := decodeMembers(b, known)
			if err != nil {
				t.Fatalf("%q: plainMembers read it, the decoder refused it: %v", b, err)
			}
			for i, k := range known {
				if !bytes.Equal(plain.vals[i], dec.vals[i]) || (plain.vals[i] == nil) != (dec.vals[i] == nil) {
					t.Fatalf("%q: member %q is %q to plainMembers, %q to the decoder", b, k, plain.vals[i], dec.vals[i])
				}
			}
		}
	})
}

// The objects workers write take the plain path; what it cannot read
// goes to the decoder, which judges it as before.
func TestPlainMembers(t *testing.T) {
	entry := EncodeEntry(Entry{Job: "0123456789abcdef", Worker: "w-1", Seq: 7, N: 1 << 20, Hits: 823550,
		Seed: "00000000000000c0", Kernel: "avx512", Seconds: 0.0125})
	for _, c := range []struct {
		in    string
		plain bool
	}{
		{string(entry), true},
		{`{"n": 1000000, "pi_approx": 3.141592}`, true},
		{`{}`, true},
		{`{"n":1,"n":2}`, false},        // duplicate: the decoder's DuplicateKey
		{`{"N":1}`, false},              // not known: perhaps folded
		{`{"n":01}`, false},             // not a number
		{`{"n":1.5e+3}`, true},          // a number
		{`{"worker":"a\u0041"}`, false}, // an escape
		{`{"n":[1]}`, false},            // nested
		{`{"n":1}x`, false},             // trailing data
	} {
		o := object{known: entryMembers}
		if got := plainMembers([]byte(c.in), &o); got != c.plain {
			t.Errorf("plainMembers(%s) = %v, want %v", c.in, got, c.plain)
		}
	}
}

// Decoding an entry, the hot path of a collector's reading.
func BenchmarkDecodeEntry(b *testing.B) {
	entry := EncodeEntry(Entry{Job: "0123456789abcdef", Worker: "w-1", Seq: 7, N: 1 << 20, Hits: 823550,
		Seed: "00000000000000c0", Kernel: "avx512", Seconds: 0.0125})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEntry(entry); err != nil {
			b.Fatal(err)
		}
	}
}
