package main

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/picluster/picluster/collector"
	"github.com/picluster/picluster/mcpi"
)

// --json prints an object whatever the summary holds: NaN and Inf as null,
// and, were a summary ever unencodable, the fields that always encode and
// the error, with a non-nil error for the exit code.
func TestWriteSummary(t *testing.T) {
	var out bytes.Buffer
	s := collector.Summary{Channel: "c", N: mcpi.CountOf(4), Pi: collector.Float(math.NaN()),
		SamplesPerS: collector.Float(math.Inf(1)), Seconds: collector.Float(math.Inf(-1)), StoppedBy: "signal"}
	if err := writeSummary(&out, s); err != nil {
		t.Fatalf("writeSummary: %v", err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got["samples_per_s"] != nil || got["pi"] != nil || got["stopped_by"] != "signal" {
		t.Errorf("printed %s (%v)", &out, err)
	}

	out.Reset()
	s.WorkerTable = []collector.WorkerStats{{ID: "w", LastSeen: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}
	err := writeSummary(&out, s)
	got = nil
	if jerr := json.Unmarshal(out.Bytes(), &got); err == nil || jerr != nil || got["error"] == nil || got["n"] != float64(4) || got["stopped_by"] != "signal" {
		t.Errorf("unencodable summary: printed %s (%v), returned %v; want an object with the error, and the error", &out, jerr, err)
	}
}
