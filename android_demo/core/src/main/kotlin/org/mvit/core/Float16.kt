package org.mvit.core

/**
 * IEEE 754 half precision (binary16) as LiteRT stores float16 tensors: two little-endian bytes per
 * element. LiteRT's Kotlin `TensorBuffer` has no float16 calls (`writeFloat` copies four bytes per
 * value, more than a float16 buffer holds), so the app packs float16 inputs itself and writes the
 * bytes with `writeInt8`, which copies them unchanged.
 */
object Float16 {
    /** The binary16 bits nearest to [f] (ties to even); overflow gives infinity, NaN stays NaN. */
    fun toBits(f: Float): Int {
        val x = java.lang.Float.floatToRawIntBits(f)
        val sign = (x ushr 16) and 0x8000
        val exp = (x ushr 23) and 0xFF
        val mant = x and 0x7FFFFF
        if (exp == 0xFF) return sign or 0x7C00 or (if (mant != 0) 0x200 or (mant ushr 13) else 0)
        val e = exp - 127 + 15
        if (e >= 0x1F) return sign or 0x7C00
        if (e <= 0) {
            if (e < -10) return sign // below half the smallest subnormal: rounds to zero
            val m = mant or 0x800000 // the implicit leading one
            val shift = 14 - e
            return sign or roundShift(m, shift)
        }
        // A carry out of the mantissa correctly bumps the exponent (up to infinity).
        return sign or ((e shl 10) + roundShift(mant, 13))
    }

    /** [v] shifted right by [shift] bits, rounded to nearest, ties to even. */
    private fun roundShift(v: Int, shift: Int): Int {
        val q = v ushr shift
        val rem = v and ((1 shl shift) - 1)
        val half = 1 shl (shift - 1)
        return if (rem > half || (rem == half && (q and 1) == 1)) q + 1 else q
    }

    /** The float value of binary16 [bits] (the low 16 bits are used); exact. */
    fun toFloat(bits: Int): Float {
        val h = bits and 0xFFFF
        val sign = (h and 0x8000) shl 16
        val exp = (h ushr 10) and 0x1F
        val mant = h and 0x3FF
        val f = when {
            exp == 0x1F -> sign or 0x7F800000 or (mant shl 13)
            exp != 0 -> sign or ((exp - 15 + 127) shl 23) or (mant shl 13)
            mant == 0 -> sign
            else -> { // subnormal: normalise
                var m = mant
                var e = -14
                while (m and 0x400 == 0) {
                    m = m shl 1
                    e--
                }
                sign or ((e + 127) shl 23) or ((m and 0x3FF) shl 13)
            }
        }
        return java.lang.Float.intBitsToFloat(f)
    }

    /** Packs [src] into [dst] (exactly `2 * src.size` bytes), little-endian. */
    fun pack(src: FloatArray, dst: ByteArray) {
        require(dst.size == src.size * 2) { "float16 buffer holds ${dst.size} bytes, ${src.size} values need ${src.size * 2}" }
        for (i in src.indices) {
            val b = toBits(src[i])
            dst[2 * i] = b.toByte()
            dst[2 * i + 1] = (b ushr 8).toByte()
        }
    }

    /** Unpacks little-endian binary16 [src] (exactly `2 * dst.size` bytes) into [dst]. */
    fun unpack(src: ByteArray, dst: FloatArray) {
        require(src.size == dst.size * 2) { "float16 buffer holds ${src.size} bytes, ${dst.size} values need ${dst.size * 2}" }
        for (i in dst.indices) dst[i] = toFloat((src[2 * i].toInt() and 0xFF) or ((src[2 * i + 1].toInt() and 0xFF) shl 8))
    }
}
