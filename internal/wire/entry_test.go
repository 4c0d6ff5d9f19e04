package wire

import (
	"errors"
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
