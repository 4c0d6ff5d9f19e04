package mcpi

import (
	"fmt"
	"math/bits"
	"strings"
)

// Kernel is one implementation of the sampling loop. Every kernel draws the
// same points and counts the same hits; they differ only in speed. The zero
// Kernel is invalid; use Pick or ParseKernel.
type Kernel struct {
	name  string
	fn    func(b *block, steps uint64) (misses uint64)
	cells func(b *block, c *cellRun, steps uint64) (misses uint64) // the stratified kernel
}

// Name returns the kernel's name as --kernel spells it: "avx512", "avx2", "go".
func (k Kernel) Name() string { return k.name }

// IsZero reports whether k is the zero Kernel, which names no kernel.
func (k Kernel) IsZero() bool { return k.fn == nil }

// String returns the kernel's name.
func (k Kernel) String() string { return k.name }

// Kernels returns the kernels this CPU can run, fastest first.
func Kernels() []Kernel {
	return append(vectorKernels(), Generic)
}

// Generic is the pure-Go kernel, available everywhere.
var Generic = Kernel{name: "go", fn: genericSteps, cells: genericCells}

// Pick returns the fastest kernel this CPU can run.
func Pick() Kernel { return Kernels()[0] }

// ParseKernel returns the kernel named name: "auto" (the fastest this CPU
// can run), "avx512", "avx2" or "go". A kernel this CPU or build cannot run is
// an error that says so.
func ParseKernel(name string) (Kernel, error) {
	if name == "" || name == "auto" {
		return Pick(), nil
	}
	var names []string
	for _, k := range Kernels() {
		if k.name == name {
			return k, nil
		}
		names = append(names, k.name)
	}
	switch name {
	case "avx512", "avx2":
		return Kernel{}, fmt.Errorf("kernel %q is not available on this CPU or build (available: %s)", name, strings.Join(names, ", "))
	}
	return Kernel{}, fmt.Errorf("unknown kernel %q (want auto, avx512, avx2 or go)", name)
}

// stepLane draws one point from lane i of b and returns 1 if it fell outside.
// It is the definition every kernel must match.
//
// The generator is xoshiro256+ (Blackman and Vigna). The output's high 32 bits
// are x and its low 32 bits y; the point is inside when x² + y² < 2⁶⁴, which
// holds exactly when the 64-bit sum x² + y² does not carry.
func stepLane(b *block, i int) uint64 {
	out := next(b, i)
	return outside(out>>32, uint64(uint32(out)))
}

// next advances lane i of b by one xoshiro256+ step and returns its output.
func next(b *block, i int) uint64 {
	out, s0, s1, s2, s3 := xoshiro(b.s[0][i], b.s[1][i], b.s[2][i], b.s[3][i])
	b.s[0][i], b.s[1][i], b.s[2][i], b.s[3][i] = s0, s1, s2, s3
	return out
}

// xoshiro is one xoshiro256+ step of the state (s0, s1, s2, s3): its
// output and the next state. It inlines: the pure-Go kernels call it on
// their states held in registers.
func xoshiro(s0, s1, s2, s3 uint64) (out, _, _, _, _ uint64) {
	out = s0 + s3
	t := s1 << 17
	s2 ^= s0
	s3 ^= s1
	s1 ^= s2
	s0 ^= s3
	s2 ^= t
	s3 = bits.RotateLeft64(s3, 45)
	return out, s0, s1, s2, s3
}

// outside returns 1 if the point (x, y) of 32-bit coordinates is outside
// the circle: the 64-bit sum x² + y² carries.
func outside(x, y uint64) uint64 {
	_, carry := bits.Add64(x*x, y*y, 0)
	return carry
}

// genericSteps advances every lane of b by steps points and returns how many
// fell outside. It runs two lanes at a time, so the CPU has two independent
// dependency chains.
func genericSteps(b *block, steps uint64) (misses uint64) {
	s := &b.s
	for i := 0; i < GroupLanes; i += 2 {
		var m uint64
		s[0][i], s[1][i], s[2][i], s[3][i], s[0][i+1], s[1][i+1], s[2][i+1], s[3][i+1], m =
			genericPair(s[0][i], s[1][i], s[2][i], s[3][i], s[0][i+1], s[1][i+1], s[2][i+1], s[3][i+1], steps)
		misses += m
	}
	return misses
}

// genericPair advances the lanes (a0…a3) and (c0…c3) by steps points each.
// It is a function of its own, kept out of line, so that the register
// allocator sees only the two states and a counter: inlined into the lane
// loop it spills and runs 30 % slower. The carries are summed with ADC.
//
//go:noinline
func genericPair(a0, a1, a2, a3, c0, c1, c2, c3, steps uint64) (_, _, _, _, _, _, _, _, misses uint64) {
	for j := steps; j > 0; j-- {
		var o uint64
		o, a0, a1, a2, a3 = xoshiro(a0, a1, a2, a3)
		x, y := o>>32, uint64(uint32(o))
		_, c := bits.Add64(x*x, y*y, 0)
		misses, _ = bits.Add64(misses, 0, c)

		o, c0, c1, c2, c3 = xoshiro(c0, c1, c2, c3)
		x, y = o>>32, uint64(uint32(o))
		_, c = bits.Add64(x*x, y*y, 0)
		misses, _ = bits.Add64(misses, 0, c)
	}
	return a0, a1, a2, a3, c0, c1, c2, c3, misses
}
