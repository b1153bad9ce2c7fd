package dev.edgediff.core

/**
 * The Python runtime's seed convention, bit for bit: `np.random.default_rng(seed)` (SeedSequence -> PCG64) and
 * `standard_normal(shape, dtype=np.float32)` (numpy's float32 ziggurat). The initial latent of image `seed` is
 * one such draw; schedulers that inject noise (LCM) draw again from the same generator, in step order.
 *
 * Sources of the facts (numpy's C and Cython code): numpy/random/bit_generator.pyx (SeedSequence constants and
 * mixing), numpy/random/src/pcg64/pcg64.h (PCG64 XSL-RR 128/64, its multiplier, the 32-bit buffering),
 * numpy/random/src/distributions/distributions.c (random_standard_normal_f). The ziggurat tables are derived
 * here from Marsaglia & Tsang's recurrence with numpy's r and v; NoiseTest proves all 768 entries identical to
 * numpy's ziggurat_constants.h.
 */
class Noise(seed: Long) {
    private val pcg: Pcg64

    init {
        require(seed >= 0) { "seed must be non-negative (numpy's SeedSequence refuses negative integers), got $seed" }
        val state = seedSequenceState(seed, 8) // generate_state(4, uint64) = 8 uint32 words, pairs little-endian
        val words = LongArray(4) { (state[2 * it].toLong() and MASK32) or (state[2 * it + 1].toLong() shl 32) }
        pcg = Pcg64(words[0], words[1], words[2], words[3])
    }

    /** Raw PCG64 output (numpy's `bit_generator.random_raw()`); exposed for the bit-exactness tests. */
    fun nextUInt64(): Long = pcg.next64()

    /** numpy's next_uint32: the low half of a 64-bit draw, then its high half on the next call. */
    fun nextUInt32(): Int = pcg.next32()

    /** `standard_normal(count, dtype=float32)`: fills a new array in C order. */
    fun standardNormal(count: Int): FloatArray = FloatArray(maxOf(count, 0)) { nextStandardNormal() }

    /** `standard_normal(shape, dtype=float32)`. */
    fun standardNormal(shape: IntArray): FloatTensor = FloatTensor(shape, standardNormal(Tensor.elementCount(shape, "noise")), "noise")

    fun nextStandardNormal(): Float {
        while (true) {
            val r = nextUInt32()
            val idx = r and 0xff
            val sign = (r ushr 8) and 1
            val rabs = (r ushr 9) and 0x007fffff
            var x = rabs.toFloat() * Ziggurat.wi[idx]
            if (sign == 1) x = -x
            if (rabs < Ziggurat.ki[idx]) return x // 99.3% of draws end here
            if (idx == 0) {
                while (true) {
                    // 1 - U avoids log(0) (numpy GH 13361)
                    val xx = -Ziggurat.INV_R_F * log1pf(-nextFloat())
                    val yy = -log1pf(-nextFloat())
                    if (yy + yy > xx * xx) {
                        return if (((rabs ushr 8) and 1) == 1) -(Ziggurat.R_F + xx) else Ziggurat.R_F + xx
                    }
                }
            } else {
                val f = (Ziggurat.fi[idx - 1] - Ziggurat.fi[idx]) * nextFloat() + Ziggurat.fi[idx]
                if (f.toDouble() < StrictMath.exp(-0.5 * x.toDouble() * x.toDouble())) return x
            }
        }
    }

    /** numpy's `next_float`: the top 24 bits of a 32-bit draw, times 2^-24. */
    private fun nextFloat(): Float = (nextUInt32() ushr 8).toFloat() * (1.0f / 16777216.0f)

    companion object {
        private const val MASK32 = 0xffffffffL

        /** The unscaled initial latent of image `seed` (edgediff/runtime/pipeline.py `initial_noise`). */
        fun initialNoise(seed: Long, shape: IntArray): FloatTensor = Noise(seed).standardNormal(shape)

        /**
         * glibc's float `log1pf` (the fdlibm algorithm, as numpy on Linux calls it), operation for operation; the
         * Swift twin (Noise.swift `log1pf`) is the same code line for line.
         *
         * Why not `StrictMath.log1p(x).toFloat()`: the tail draws above go through log1pf, and the float64 result
         * rounded once differs from glibc's float algorithm on some inputs (seed 5, draw 18974: 0x406e9d0d from
         * numpy, one ulp off from the rounded double), which breaks bit-exactness with numpy on Linux, where the
         * golden files are made. NoiseTest checks it on every input numpy can pass (apps/golden/noise/noise.json).
         */
        internal fun log1pf(x: Float): Float {
            val ln2Hi = Float.fromBits(0x3F317180)
            val ln2Lo = Float.fromBits(0x3717F7D1)
            val hx = x.toRawBits()
            val ax = hx and 0x7FFFFFFF
            var k = 1
            var f = 0f
            var c = 0f
            var hu = 0
            if (hx < 0x3ED413D7) { // 1 + x < sqrt(2)+
                if (ax >= 0x3F800000) { // x <= -1
                    return if (x == -1f) Float.NEGATIVE_INFINITY else Float.NaN
                }
                if (ax < 0x31000000) { // |x| < 2^-29
                    return if (ax < 0x24800000) x else x - x * x * 0.5f
                }
                if (hx > 0 || hx <= 0xBE95F61F.toInt()) { // sqrt(2)/2- <= 1 + x < sqrt(2)+
                    k = 0
                    f = x
                    hu = 1
                }
            }
            if (hx >= 0x7F800000) return x + x // +inf or NaN
            if (k != 0) {
                var u: Float
                if (hx < 0x5A000000) {
                    u = 1f + x
                    hu = u.toRawBits()
                    k = (hu shr 23) - 127
                    c = if (k > 0) 1f - (u - x) else x - (u - 1f) // the rounding error of 1 + x
                    c /= u
                } else {
                    u = x
                    hu = u.toRawBits()
                    k = (hu shr 23) - 127
                    c = 0f
                }
                hu = hu and 0x007FFFFF
                if (hu < 0x3504F7) {
                    u = Float.fromBits(hu or 0x3F800000) // normalize u
                } else {
                    k += 1
                    u = Float.fromBits(hu or 0x3F000000) // normalize u / 2
                    hu = (0x00800000 - hu) shr 2
                }
                f = u - 1f
            }
            val hfsq = 0.5f * f * f
            val fk = k.toFloat()
            if (hu == 0) { // |f| < 2^-20
                if (f == 0f) {
                    if (k == 0) return 0f
                    c += fk * ln2Lo
                    return fk * ln2Hi + c
                }
                val r = hfsq * (1f - Float.fromBits(0x3F2AAAAB) * f)
                if (k == 0) return f - r
                return fk * ln2Hi - ((r - (fk * ln2Lo + c)) - f)
            }
            val s = f / (2f + f)
            val z = s * s
            var r = Float.fromBits(0x3E178897) // Lp7 ... Lp1
            for (coefficient in LOG1PF_LP) r = Float.fromBits(coefficient) + z * r
            r = z * r
            if (k == 0) return f - (hfsq - s * (hfsq + r))
            return fk * ln2Hi - ((hfsq - (s * (hfsq + r) + (fk * ln2Lo + c))) - f)
        }

        /** fdlibm's Lp6 .. Lp1 of log1pf, as float32 bit patterns. */
        private val LOG1PF_LP = intArrayOf(0x3E1CD04F, 0x3E3A3325, 0x3E638E29, 0x3E924925, 0x3ECCCCCD, 0x3F2AAAAB)

        // numpy/random/bit_generator.pyx
        private const val INIT_A = 0x43b0d7e5
        private const val MULT_A = 0x931e8875.toInt()
        private const val INIT_B = 0x8b51f9dd.toInt()
        private const val MULT_B = 0x58f38ded
        private const val MIX_MULT_L = 0xca01f9dd.toInt()
        private const val MIX_MULT_R = 0x4973f715
        private const val POOL_SIZE = 4

        /** numpy's _int_to_uint32_array: little-endian 32-bit words, [0] for zero. */
        private fun entropyWords(seed: Long): IntArray =
            if (seed ushr 32 == 0L) intArrayOf(seed.toInt()) else intArrayOf(seed.toInt(), (seed ushr 32).toInt())

        /** SeedSequence(seed).generate_state(nWords, uint32). */
        fun seedSequenceState(seed: Long, nWords: Int): IntArray {
            val entropy = entropyWords(seed)
            val pool = IntArray(POOL_SIZE)
            var hashConst = INIT_A
            fun hashmix(value: Int): Int {
                var v = value xor hashConst
                hashConst *= MULT_A
                v *= hashConst
                return v xor (v ushr 16)
            }
            fun mix(x: Int, y: Int): Int {
                val result = MIX_MULT_L * x - MIX_MULT_R * y
                return result xor (result ushr 16)
            }
            for (i in 0 until POOL_SIZE) pool[i] = hashmix(if (i < entropy.size) entropy[i] else 0)
            for (src in 0 until POOL_SIZE) {
                for (dst in 0 until POOL_SIZE) {
                    if (src != dst) pool[dst] = mix(pool[dst], hashmix(pool[src]))
                }
            }
            for (src in POOL_SIZE until entropy.size) {
                for (dst in 0 until POOL_SIZE) pool[dst] = mix(pool[dst], hashmix(entropy[src]))
            }
            var hashB = INIT_B
            return IntArray(nWords) { i ->
                var v = pool[i % POOL_SIZE] xor hashB
                hashB *= MULT_B
                v *= hashB
                v xor (v ushr 16)
            }
        }
    }
}

/** PCG64 (XSL-RR 128/64) with 128-bit state as two longs; seeded as numpy's pcg64_set_seed. */
internal class Pcg64(seedHigh: Long, seedLow: Long, incHigh: Long, incLow: Long) {
    private var stateHi = 0L
    private var stateLo = 0L
    private val incHi: Long
    private val incLo: Long
    private var hasUInt32 = false
    private var buffered = 0

    init {
        // inc = (initseq << 1) | 1
        incHi = (incHigh shl 1) or (incLow ushr 63)
        incLo = (incLow shl 1) or 1L
        step()
        val lo = stateLo + seedLow
        val carry = if (java.lang.Long.compareUnsigned(lo, stateLo) < 0) 1L else 0L
        stateHi = stateHi + seedHigh + carry
        stateLo = lo
        step()
    }

    private fun step() {
        // state = state * MULT + inc (mod 2^128)
        val lo = stateLo * MULT_LO
        val hi = unsignedMultiplyHigh(stateLo, MULT_LO) + stateHi * MULT_LO + stateLo * MULT_HI
        val sumLo = lo + incLo
        val carry = if (java.lang.Long.compareUnsigned(sumLo, lo) < 0) 1L else 0L
        stateHi = hi + incHi + carry
        stateLo = sumLo
    }

    fun next64(): Long {
        step()
        val rot = (stateHi ushr 58).toInt()
        return java.lang.Long.rotateRight(stateHi xor stateLo, rot)
    }

    fun next32(): Int {
        if (hasUInt32) {
            hasUInt32 = false
            return buffered
        }
        val next = next64()
        hasUInt32 = true
        buffered = (next ushr 32).toInt()
        return next.toInt()
    }

    companion object {
        // numpy/random/src/pcg64/pcg64.h: PCG_DEFAULT_MULTIPLIER_HIGH / _LOW
        private const val MULT_HI = 2549297995355413924L
        private const val MULT_LO = 4865540595714422341L

        /** High 64 bits of the unsigned 128-bit product (Math.unsignedMultiplyHigh needs Java 18 / Android 35). */
        fun unsignedMultiplyHigh(a: Long, b: Long): Long {
            val aLo = a and 0xffffffffL
            val aHi = a ushr 32
            val bLo = b and 0xffffffffL
            val bHi = b ushr 32
            val loLo = aLo * bLo
            val hiLo = aHi * bLo
            val loHi = aLo * bHi
            val hiHi = aHi * bHi
            val cross = (loLo ushr 32) + (hiLo and 0xffffffffL) + (loHi and 0xffffffffL)
            return hiHi + (hiLo ushr 32) + (loHi ushr 32) + (cross ushr 32)
        }
    }
}

/**
 * numpy's float32 ziggurat tables (256 boxes), derived from Marsaglia & Tsang's recurrence with numpy's
 * constants r = 3.6541528853610088 and v = 4.92867323399e-3, in float64, then: ki = round(x[i-1]/x[i] * 2^23)
 * (ki[0] from q = v / f(r)), wi = x[i] / 2^23 and fi = exp(-x^2/2) rounded to float32.
 */
internal object Ziggurat {
    const val R = 3.6541528853610087963519472518
    const val R_F = 3.6541528853610087963519472518f
    const val INV_R_F = 0.27366123732975827203338247596f
    private const val V = 4.92867323399e-3
    private const val M1 = 8388608.0 // 2^23

    val ki = IntArray(256)
    val wi = FloatArray(256)
    val fi = FloatArray(256)

    init {
        var dn = R
        var tn = dn
        val q = V / StrictMath.exp(-0.5 * dn * dn)
        ki[0] = Math.round(dn / q * M1).toInt()
        ki[1] = 0
        wi[0] = (q / M1).toFloat()
        wi[255] = (dn / M1).toFloat()
        fi[0] = 1.0f
        fi[255] = StrictMath.exp(-0.5 * dn * dn).toFloat()
        for (i in 254 downTo 1) {
            dn = StrictMath.sqrt(-2.0 * StrictMath.log(V / dn + StrictMath.exp(-0.5 * dn * dn)))
            ki[i + 1] = Math.round(dn / tn * M1).toInt()
            tn = dn
            fi[i] = StrictMath.exp(-0.5 * dn * dn).toFloat()
            wi[i] = (dn / M1).toFloat()
        }
    }
}
