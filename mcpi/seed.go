package mcpi

// Key names one batch. A batch's hits are a pure function of its Key and its
// sample count: the same on every kernel and for every thread count, so any
// batch can be replayed and checked later.
type Key struct {
	Seed   uint64 // the worker's seed, random unless the user fixes it
	Worker string // the worker's id
	Seq    uint64 // the batch's number within the worker's life, 1, 2, …
}

const golden = 0x9e3779b97f4a7c15 // splitmix64's increment: 2⁶⁴/φ, odd

// mix64 is splitmix64's output function (Steele, Lea and Flood 2014), a
// bijection of uint64 with full avalanche.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// base returns the splitmix64 state from which the key's lane states are drawn.
func (k Key) base() uint64 {
	h := uint64(0xcbf29ce484222325) // FNV-1a 64 of the worker id
	for i := 0; i < len(k.Worker); i++ {
		h = (h ^ uint64(k.Worker[i])) * 0x100000001b3
	}
	return mix64(mix64(mix64(k.Seed+golden)^h+golden) ^ k.Seq + golden)
}

// seedLane returns the xoshiro256 state of lane i: the splitmix64 outputs
// 4i+1 … 4i+4 of the stream that starts at base, as Vigna recommends.
func seedLane(base uint64, i int) (s0, s1, s2, s3 uint64) {
	x := base + uint64(4*i)*golden
	x += golden
	s0 = mix64(x)
	x += golden
	s1 = mix64(x)
	x += golden
	s2 = mix64(x)
	x += golden
	s3 = mix64(x)
	if s0|s1|s2|s3 == 0 { // the one state xoshiro cannot leave; odds 2⁻²⁵⁶
		s0 = golden
	}
	return s0, s1, s2, s3
}
