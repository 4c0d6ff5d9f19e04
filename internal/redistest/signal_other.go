//go:build !unix

package redistest

import (
	"errors"
	"os"
)

// No signal freezes a process here: Pause and Resume skip the test.
func signal(*os.Process, bool) error { return errors.ErrUnsupported }
