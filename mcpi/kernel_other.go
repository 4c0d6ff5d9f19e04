//go:build !amd64 || purego

package mcpi

// vectorKernels returns no kernels: this build has only the pure-Go one.
func vectorKernels() []Kernel { return nil }
