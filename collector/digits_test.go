package collector

import (
	"encoding/json"
	"math"
	"os"
	"strconv"
	"testing"
)

// DigitsCase is one row of testdata/digits.json, the table that the rule
// and both renderers (internal/tui, the dashboard) are tested against.
type DigitsCase struct {
	Why     string  `json:"why"`
	Pi      jsonNum `json:"pi"`
	Lo      jsonNum `json:"lo"`
	Hi      jsonNum `json:"hi"`
	Certain string  `json:"certain"`
	More    string  `json:"more"`
}

// jsonNum is a number, or one of the strings "NaN", "+Inf", "-Inf".
type jsonNum float64

func (f *jsonNum) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := strconv.ParseFloat(s, 64)
		*f = jsonNum(v)
		return err
	}
	var v float64
	err := json.Unmarshal(b, &v)
	*f = jsonNum(v)
	return err
}

func TestCertainDigits(t *testing.T) {
	b, err := os.ReadFile("testdata/digits.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []DigitsCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	for _, tt := range cases {
		t.Run(tt.Why, func(t *testing.T) {
			got := CertainDigits(float64(tt.Pi), float64(tt.Lo), float64(tt.Hi))
			if want := (Digits{tt.Certain, tt.More}); got != want {
				t.Errorf("CertainDigits(%v, %v, %v) = %+v, want %+v", tt.Pi, tt.Lo, tt.Hi, got, want)
			}
		})
	}
}

// Every prefix CertainDigits calls certain is a prefix of every number in
// the interval, read as its shortest decimal.
func TestCertainDigitsHoldInTheInterval(t *testing.T) {
	for i := range 2000 {
		se := math.Pow(10, -1-8*float64(i)/2000)
		pi := math.Pi + se*math.Sin(float64(i))
		lo, hi := pi-1.96*se, pi+1.96*se
		d := CertainDigits(pi, lo, hi)
		for _, x := range []float64{lo, pi, hi, math.Nextafter(lo, 4), math.Nextafter(hi, 0)} {
			if s := strconv.FormatFloat(x, 'f', -1, 64); len(s) < len(d.Certain) || s[:len(d.Certain)] != d.Certain {
				t.Fatalf("[%v, %v]: certain %q but %v reads %s", lo, hi, d.Certain, x, s)
			}
		}
	}
}
