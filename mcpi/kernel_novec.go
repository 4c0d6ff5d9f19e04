package mcpi

// vectorKernels returns the vector kernels this CPU can run, fastest first.
func vectorKernels() []Kernel { return nil }
