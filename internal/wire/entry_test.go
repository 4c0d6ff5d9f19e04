package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// A stratified entry carries its K; a plain one has no cells member, and
// decodes as before.
func TestEntryCells(t *testing.T) {
	base := Entry{Job: "0123456789abcdef", Worker: "w1", Seq: 3, N: 1 << 14, Hits: 12860,
		Seed: "00000000000000c0", Kernel: "avx512", Seconds: 0.001}
	for _, cells := range []uint64{0, 128} {
		e := base
		e.Cells = cells
		got, err := DecodeEntry(EncodeEntry(e))
		if err != nil {
			t.Fatalf("cells %d: %v", cells, err)
		}
		if got.Cells != cells || got.N != e.N || got.Hits != e.Hits {
			t.Errorf("cells %d: decoded %+v", cells, got)
		}
	}
	for _, bad := range []string{`0`, `-1`, `"128"`, `1.5`} {
		b := []byte(`{"v":2,"job":"0123456789abcdef","worker":"w1","seq":3,"n":16384,"hits":12860,"pi_approx":3.13964844,"seed":"00000000000000c0","kernel":"avx512","seconds":0.001,"cells":` + bad + `}`)
		_, err := DecodeEntry(b)
		var we *Error
		if !errors.As(err, &we) || we.Reason != WrongEstimator {
			t.Errorf("cells %s: err %v, want %s", bad, err, WrongEstimator)
		}
	}
}

// A Verifier used for many entries judges each as a new one would: its
// state is the key's alone, whatever it verified before.
func TestVerifier(t *testing.T) {
	key, other := WorkerKey([]byte("0123456789abcdef-job"), "w1"), WorkerKey([]byte("0123456789abcdef-job"), "w2")
	v := NewVerifier(key)
	for i := range 3 {
		entry := EncodeEntry(Entry{Job: "0123456789abcdef", Worker: "w1", Seq: uint64(i + 1), N: 64, Hits: 50,
			Seed: "00000000000000c0", Kernel: "go"})
		sig := Sign(key, entry)
		tampered := bytes.Replace(entry, []byte(`"hits":50`), []byte(`"hits":51`), 1)
		for _, c := range []struct {
			name  string
			entry []byte
			sig   string
			want  bool
		}{
			{"signed", entry, sig, true},
			{"upper-case hex", entry, strings.ToUpper(sig), true},
			{"tampered entry", tampered, sig, false},
			{"another key", entry, Sign(other, entry), false},
			{"short", entry, sig[:62], false},
			{"long", entry, sig + "00", false},
			{"not hex", entry, "zz" + sig[2:], false},
			{"empty", entry, "", false},
		} {
			if got := v.OK(c.entry, c.sig); got != c.want {
				t.Errorf("entry %d, %s: OK = %v, want %v", i+1, c.name, got, c.want)
			}
			if got := SignatureOK(key, c.entry, c.sig); got != c.want {
				t.Errorf("entry %d, %s: SignatureOK = %v, want %v", i+1, c.name, got, c.want)
			}
		}
	}
}
