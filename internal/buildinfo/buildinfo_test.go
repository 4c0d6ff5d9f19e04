package buildinfo

import (
	"runtime"
	"testing"
)

func TestRead(t *testing.T) {
	got := Read()
	if got.GoVersion != runtime.Version() || got.OS != runtime.GOOS || got.Arch != runtime.GOARCH {
		t.Errorf("Read() = %+v, want Go %s on %s/%s", got, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	if got.Version == "" {
		t.Error("Read().Version is empty, want a version or (devel)")
	}
}

func TestLinkerOverrides(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v9.8.7", "abc123"
	got := Read()
	if got.Version != "v9.8.7" || got.Commit != "abc123" {
		t.Errorf("with -X version and commit: got %q %q, want v9.8.7 abc123", got.Version, got.Commit)
	}
}
