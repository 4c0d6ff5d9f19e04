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

// A worker never seen (rebuilt from a checkpoint) has no last_seen, rather
// than year 1.
func TestNeverSeenOmitted(t *testing.T) {
	var out bytes.Buffer
	s := collector.Summary{WorkerTable: []collector.WorkerStats{{ID: "old"}, {ID: "new", LastSeen: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}}
	if err := writeSummary(&out, s); err != nil {
		t.Fatal(err)
	}
	var got struct {
		WorkerTable []map[string]any `json:"worker_table"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got.WorkerTable[0]["last_seen"]; ok || got.WorkerTable[1]["last_seen"] != "2026-01-02T03:04:05Z" {
		t.Errorf("worker_table %v: want no last_seen for the worker never seen, and the time of the other", got.WorkerTable)
	}
}
