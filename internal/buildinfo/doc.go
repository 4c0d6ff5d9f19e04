// Package buildinfo says which picluster this is: its version, the commit it
// was built from, and the Go that built it.
//
// The version and commit come from the linker when a release build sets
// them (scripts/release.sh does):
//
//	go build -ldflags "-X github.com/picluster/picluster/internal/buildinfo.version=v1.2.0 \
//	                   -X github.com/picluster/picluster/internal/buildinfo.commit=0123abc" ./cmd/picluster
//
// and otherwise from what the go command records in the binary
// (runtime/debug.ReadBuildInfo): the module version of "go install
// module@version", or the VCS revision of a build inside a git checkout.
// Read has no side effects and is safe for concurrent use.
package buildinfo
