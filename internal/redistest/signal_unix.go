//go:build unix

package redistest

import (
	"os"
	"syscall"
)

// signal freezes (stop) or wakes the process.
func signal(p *os.Process, stop bool) error {
	if stop {
		return p.Signal(syscall.SIGSTOP)
	}
	return p.Signal(syscall.SIGCONT)
}
