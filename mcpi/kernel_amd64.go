//go:build !purego

package mcpi

import "golang.org/x/sys/cpu"

// vectorKernels returns the vector kernels this CPU and OS can run, fastest
// first. x/sys/cpu checks that the OS saves the wide registers too.
func vectorKernels() []Kernel {
	var ks []Kernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, Kernel{name: "avx512", fn: func(b *block, steps uint64) uint64 { return stepsAVX512(&b.s, steps) },
			cells: func(b *block, c *cellRun, steps uint64) uint64 { return cellsAVX512(&b.s, &c.x, c.y, c.w, c.k, steps) }})
	}
	if cpu.X86.HasAVX2 {
		ks = append(ks, Kernel{name: "avx2", fn: func(b *block, steps uint64) uint64 { return stepsAVX2(&b.s, steps) },
			cells: func(b *block, c *cellRun, steps uint64) uint64 { return cellsAVX2(&b.s, &c.x, c.y, c.w, c.k, steps) }})
	}
	return ks
}
