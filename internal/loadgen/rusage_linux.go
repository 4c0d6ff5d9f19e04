package loadgen

import (
	"os"
	"syscall"
)

// maxRSSOf returns a process's peak resident set in bytes, from its rusage
// (kilobytes on Linux).
func maxRSSOf(st *os.ProcessState) uint64 {
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > 0 {
		return uint64(ru.Maxrss) << 10
	}
	return 0
}
