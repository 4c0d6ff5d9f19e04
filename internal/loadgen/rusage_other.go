//go:build !linux

package loadgen

import "os"

// maxRSSOf is unknown off Linux, where loadgen reads /proc anyway.
func maxRSSOf(*os.ProcessState) uint64 { return 0 }
