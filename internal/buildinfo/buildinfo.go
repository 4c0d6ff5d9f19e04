package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X; empty in an ordinary build. They are written only by
// the linker, never at run time.
var (
	version string
	commit  string
)

// Info describes a build.
type Info struct {
	Version   string // "v1.2.0", a pseudo-version, or "(devel)"
	Commit    string // the VCS revision, "" if unknown
	Modified  bool   // the working tree had uncommitted changes
	Time      string // the commit's time (RFC 3339), "" if unknown
	GoVersion string // runtime.Version()
	OS, Arch  string // runtime.GOOS, runtime.GOARCH
}

// Read returns the build's Info.
func Read() Info {
	in := Info{Version: "(devel)", GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			in.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Commit = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			case "vcs.time":
				in.Time = s.Value
			}
		}
	}
	if version != "" {
		in.Version = version
	}
	if commit != "" {
		in.Commit = commit
	}
	return in
}
