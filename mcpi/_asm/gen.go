// Command gen writes mcpi's vector kernels, kernel_amd64.s, with avo.
// Run it with "go generate ./mcpi" from the repository root.
//
// The plain kernels compute exactly what mcpi.stepLane defines: per point one
// xoshiro256+ output, x = high 32 bits, y = low 32 bits, a miss when the
// 64-bit sum x² + y² carries. Lane states are a structure of arrays,
// s[word][lane], 32 lanes. VPMULUDQ multiplies the low 32 bits of each
// quadword, so y² needs no masking.
//
// The stratified kernels compute what mcpi.stepCell defines: the same
// generator, the point (xb | out>>(32+k), y | uint32(out)>>k), w = 2³²/2ᵏ
// the cell width, xb the lane's column base and y the row base shared by
// the 32 lanes, which moves on by w every step. One 32-bit variable shift
// (VPSRLVD) makes both jitters, each half of the output shifted right by k;
// one OR of three (VPTERNLOGQ; two ORs on AVX2) puts the point in its cell,
// (xb << 32 | y) | jitters; x is then its high half as in the plain kernels.
package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

const lanes = 32

func main() {
	ConstraintExpr("amd64,!purego")
	avx512()
	avx2()
	cellsAVX512()
	cellsAVX2()
	Generate()
}

// state addresses word w of lanes [lane, lane+n) in the block at ptr.
func state(ptr Register, w, lane int) Mem {
	return Mem{Base: ptr, Disp: (w*lanes + lane) * 8}
}

func avx512() {
	TEXT("stepsAVX512", NOSPLIT, "func(s *[4][32]uint64, steps uint64) (misses uint64)")
	Doc("stepsAVX512 advances 32 lanes by steps points each, 8 lanes to a ZMM register, and returns the misses.")
	ptr := Load(Param("s"), GP64())
	n := Load(Param("steps"), GP64())
	const vecs = vecs512
	s := load512(ptr)
	acc, bits := GP64(), GP64() // misses512 says why they are counted here
	XORQ(acc, acc)
	miss := K()

	TESTQ(n, n)
	JZ(LabelRef("done512"))
	Label("loop512")
	for v := range vecs {
		s0, s1, s2, s3 := s[0][v], s[1][v], s[2][v], s[3][v]
		out, t, x := ZMM(), ZMM(), ZMM()
		next512(s0, s1, s2, s3, out, t)
		misses512(out, x, miss, bits, acc)
	}
	DECQ(n)
	JNZ(LabelRef("loop512"))
	Label("done512")
	store512(s, ptr, acc)
}

// vecs512 is how many ZMM registers hold a state word of the 32 lanes.
const vecs512 = lanes / 8

// load512 loads the 32 lanes' states at ptr into ZMM registers.
func load512(ptr Register) (s [4][vecs512]VecVirtual) {
	for w := range 4 {
		for v := range vecs512 {
			s[w][v] = ZMM()
			VMOVDQU64(state(ptr, w, 8*v), s[w][v])
		}
	}
	return s
}

// store512 stores the states s back at ptr and returns the misses in acc.
func store512(s [4][vecs512]VecVirtual, ptr Register, acc GPVirtual) {
	for w := range 4 {
		for v := range vecs512 {
			VMOVDQU64(s[w][v], state(ptr, w, 8*v))
		}
	}
	VZEROUPPER()
	Store(acc, ReturnIndex(0))
	RET()
}

// vecs2 is how many YMM registers hold a state word of a chunk of 8 lanes:
// 8 state registers of the 16.
const vecs2 = 2

// load2 loads the states of chunk (8 lanes) at ptr into YMM registers.
func load2(ptr Register, chunk int) (s [4][vecs2]VecVirtual) {
	for w := range 4 {
		for v := range vecs2 {
			s[w][v] = YMM()
			VMOVDQU(state(ptr, w, chunk*4*vecs2+4*v), s[w][v])
		}
	}
	return s
}

// store2 stores the states s of chunk back at ptr.
func store2(s [4][vecs2]VecVirtual, ptr Register, chunk int) {
	for w := range 4 {
		for v := range vecs2 {
			VMOVDQU(s[w][v], state(ptr, w, chunk*4*vecs2+4*v))
		}
	}
}

// next512 advances the xoshiro256+ states s0 … s3 of 8 lanes and puts their
// outputs in out; t is scratch. mcpi.stepLane is the definition.
func next512(s0, s1, s2, s3, out, t VecVirtual) {
	VPADDQ(s3, s0, out)              // out = s0 + s3
	VPSLLQ(U8(17), s1, t)            // t = s1 << 17
	VPXORQ(s1, s3, s3)               // s3 ^= s1
	VPTERNLOGQ(U8(0x96), s0, s2, s1) // s1 ^= s2 ^ s0   (old s2, s0)
	VPTERNLOGQ(U8(0x96), t, s0, s2)  // s2 ^= s0 ^ t
	VPXORQ(s3, s0, s0)               // s0 ^= s3        (s3 ^ s1, old s1)
	VPROLQ(U8(45), s3, s3)           // s3 = rotl(s3, 45)
}

// misses512 adds to acc how many of the 8 points in p (x in the high half,
// y in the low) fall outside the circle; p and x are clobbered. Misses are
// counted on the integer side (KMOVW, POPCNT, ADD), which has idle ports,
// rather than with a masked vector add: on Zen 4 every ZMM operation takes
// two of the four vector pipes' slots.
func misses512(p, x VecVirtual, miss OpmaskVirtual, bits, acc GPVirtual) {
	VPSRLQ(U8(32), p, x)       // x = p >> 32
	VPMULUDQ(x, x, x)          // x² (exact, 64 bits)
	VPMULUDQ(p, p, p)          // y² from the low 32 bits
	VPADDQ(x, p, p)            // x² + y² mod 2⁶⁴
	VPCMPUQ(U8(1), x, p, miss) // carried: sum < x²
	KMOVW(miss, bits.As32())   // count the misses
	POPCNTL(bits.As32(), bits.As32())
	ADDQ(bits, acc)
}

// next2 is next512 for 4 lanes in YMM registers (AVX2 has no rotate).
func next2(s0, s1, s2, s3, out, t VecVirtual) {
	VPADDQ(s3, s0, out)    // out = s0 + s3
	VPSLLQ(U8(17), s1, t)  // t = s1 << 17
	VPXOR(s0, s2, s2)      // s2 ^= s0
	VPXOR(s1, s3, s3)      // s3 ^= s1
	VPXOR(s2, s1, s1)      // s1 ^= s2
	VPXOR(s3, s0, s0)      // s0 ^= s3
	VPXOR(t, s2, s2)       // s2 ^= t
	VPSLLQ(U8(45), s3, t)  // s3 = rotl(s3, 45)
	VPSRLQ(U8(19), s3, s3) //
	VPOR(t, s3, s3)        //
}

// misses2 is misses512 on AVX2: it subtracts -1 from acc for each of the 4
// points in p outside the circle; p, x and t are clobbered.
func misses2(p, x, t, sign, acc VecVirtual) {
	VPSRLQ(U8(32), p, x) // x = p >> 32
	VPMULUDQ(x, x, x)    // x²
	VPMULUDQ(p, p, p)    // y² from the low 32 bits
	VPXOR(sign, x, x)    // x² + 2⁶³: the signed compare below is then unsigned
	VPADDQ(x, p, p)      // x² + y² + 2⁶³
	VPCMPGTQ(p, x, t)    // carried: x² > x² + y², all ones where true
	VPSUBQ(t, acc, acc)  // count the misses
}

// sum reduces the four quadwords of y to a GP register, stores it as the
// result and returns.
func sum(y VecVirtual) {
	x := XMM()
	VEXTRACTI128(U8(1), y, x)
	VPADDQ(x, y.AsX(), x)
	hi := XMM()
	VPSHUFD(U8(0x4e), x, hi)
	VPADDQ(hi, x, x)
	r := GP64()
	VMOVQ(x, r)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

func avx2() {
	TEXT("stepsAVX2", NOSPLIT, "func(s *[4][32]uint64, steps uint64) (misses uint64)")
	Doc("stepsAVX2 advances 32 lanes by steps points each, 8 lanes at a time in two YMM registers per state word, and returns the misses.")
	ptr := Load(Param("s"), GP64())
	n := Load(Param("steps"), GP64())
	sign, acc := YMM(), YMM()
	tmp := GP64()
	MOVQ(U64(1<<63), tmp)
	VMOVQ(tmp, sign.AsX())
	VPBROADCASTQ(sign.AsX(), sign)
	VPXOR(acc, acc, acc)
	TESTQ(n, n)
	JZ(LabelRef("done2"))
	cnt := GP64()
	const vecs = vecs2
	for chunk := range lanes / (4 * vecs) {
		s := load2(ptr, chunk)
		MOVQ(n, cnt)
		loop := LabelRef("loop2_" + string(rune('a'+chunk)))
		Label(string(loop))
		for v := range vecs {
			s0, s1, s2, s3 := s[0][v], s[1][v], s[2][v], s[3][v]
			out, t, x := YMM(), YMM(), YMM()
			next2(s0, s1, s2, s3, out, t)
			misses2(out, x, t, sign, acc)
		}
		DECQ(cnt)
		JNZ(loop)
		store2(s, ptr, chunk)
	}
	Label("done2")
	sum(acc)
}

// ternOr3 is VPTERNLOGQ's truth table for dst = dst | b | c.
const ternOr3 = 0xfe

func cellsAVX512() {
	TEXT("cellsAVX512", NOSPLIT, "func(s *[4][32]uint64, x *[32]uint64, y, w, k, steps uint64) (misses uint64)")
	Doc("cellsAVX512 advances 32 lanes by steps points each, lane ℓ's in the cells of column base x[ℓ], rows y, y+w, …, and returns the misses.")
	ptr := Load(Param("s"), GP64())
	xp := Load(Param("x"), GP64())
	n := Load(Param("steps"), GP64())
	yv, wv, kv := ZMM(), ZMM(), ZMM()
	r := Load(Param("y"), GP64())
	VPBROADCASTQ(r, yv)
	r = Load(Param("w"), GP64())
	VPBROADCASTQ(r, wv)
	kr := GP64()
	Load(Param("k"), kr)
	VPBROADCASTD(kr.As32(), kv) // both halves of every lane shift right by k
	const vecs = vecs512
	s := load512(ptr)
	var xb [vecs]VecVirtual
	for v := range vecs {
		xb[v] = ZMM()
		VMOVDQU64(Mem{Base: xp, Disp: 64 * v}, xb[v])
		VPSLLQ(U8(32), xb[v], xb[v]) // the column base in the high half
	}
	acc, bits := GP64(), GP64()
	XORQ(acc, acc)
	miss := K()

	TESTQ(n, n)
	JZ(LabelRef("donec512"))
	Label("loopc512")
	for v := range vecs {
		s0, s1, s2, s3 := s[0][v], s[1][v], s[2][v], s[3][v]
		out, t, x := ZMM(), ZMM(), ZMM()
		next512(s0, s1, s2, s3, out, t)
		VPSRLVD(kv, out, out)                   // both jitters: each half >> k
		VPTERNLOGQ(U8(ternOr3), yv, xb[v], out) // (xb << 32 | yb) | jitters: the point
		misses512(out, x, miss, bits, acc)
	}
	VPADDQ(wv, yv, yv) // the next row
	DECQ(n)
	JNZ(LabelRef("loopc512"))
	Label("donec512")
	store512(s, ptr, acc)
}

func cellsAVX2() {
	TEXT("cellsAVX2", NOSPLIT, "func(s *[4][32]uint64, x *[32]uint64, y, w, k, steps uint64) (misses uint64)")
	Doc("cellsAVX2 advances 32 lanes by steps points each, lane ℓ's in the cells of column base x[ℓ], rows y, y+w, …, 8 lanes at a time, and returns the misses.")
	ptr := Load(Param("s"), GP64())
	xp := Load(Param("x"), GP64())
	n := Load(Param("steps"), GP64())
	sign, acc, kv := YMM(), YMM(), YMM()
	tmp := GP64()
	MOVQ(U64(1<<63), tmp)
	VMOVQ(tmp, sign.AsX())
	VPBROADCASTQ(sign.AsX(), sign)
	wmem := AllocLocal(32)
	r := Load(Param("w"), GP64())
	VMOVQ(r, kv.AsX())
	VPBROADCASTQ(kv.AsX(), kv)
	VMOVDQU(kv, wmem) // w, added to the row base once a step
	xmem := AllocLocal(lanes * 8)
	for v := range lanes / 4 { // the column bases in the high halves
		VMOVDQU(Mem{Base: xp, Disp: 32 * v}, kv)
		VPSLLQ(U8(32), kv, kv)
		VMOVDQU(kv, xmem.Offset(32*v))
	}
	kr := GP64()
	Load(Param("k"), kr)
	VMOVD(kr.As32(), kv.AsX())
	VPBROADCASTD(kv.AsX(), kv) // both halves of every lane shift right by k
	y0 := Load(Param("y"), GP64())
	VPXOR(acc, acc, acc)
	TESTQ(n, n)
	JZ(LabelRef("donec2"))
	cnt := GP64()
	const vecs = vecs2
	for chunk := range lanes / (4 * vecs) {
		s := load2(ptr, chunk)
		yv := YMM()
		VMOVQ(y0, yv.AsX())
		VPBROADCASTQ(yv.AsX(), yv)
		MOVQ(n, cnt)
		loop := LabelRef("loopc2_" + string(rune('a'+chunk)))
		Label(string(loop))
		for v := range vecs {
			s0, s1, s2, s3 := s[0][v], s[1][v], s[2][v], s[3][v]
			out, t, x := YMM(), YMM(), YMM()
			next2(s0, s1, s2, s3, out, t)
			VPSRLVD(kv, out, out) // both jitters: each half >> k
			VPOR(xmem.Offset((chunk*4*vecs+4*v)*8), out, out)
			VPOR(yv, out, out) // (xb << 32 | yb) | jitters: the point
			misses2(out, x, t, sign, acc)
		}
		VPADDQ(wmem, yv, yv) // the next row
		DECQ(cnt)
		JNZ(loop)
		store2(s, ptr, chunk)
	}
	Label("donec2")
	sum(acc)
}
