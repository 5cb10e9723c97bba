package org.mvit.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** float16 tensors: two little-endian bytes per value, rounded to nearest even. */
class Float16Test {
    @Test
    fun knownBitPatterns() {
        val cases = listOf(0f to 0x0000, -0f to 0x8000, 1f to 0x3C00, -2f to 0xC000, 0.5f to 0x3800, 65504f to 0x7BFF,
            1e6f to 0x7C00, Float.NEGATIVE_INFINITY to 0xFC00, 6.1035156e-5f to 0x0400, 5.9604645e-8f to 0x0001,
            1f / 3 to 0x3555, 0.1f to 0x2E66)
        for ((f, bits) in cases) assertEquals("$f", bits, Float16.toBits(f))
        for ((f, bits) in cases.filter { (f, _) -> f != 1e6f && f != 1f / 3 && f != 0.1f }) assertEquals(f, Float16.toFloat(bits), 0f)
        assertEquals(0.333251953125f, Float16.toFloat(0x3555), 0f)
        assertEquals(0.0999755859375f, Float16.toFloat(0x2E66), 0f)
        assertTrue(Float16.toFloat(Float16.toBits(Float.NaN)).isNaN())
    }

    @Test
    fun roundsHalfwayToEven() {
        // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties to the even mantissa (1.0).
        assertEquals(0x3C00, Float16.toBits(1f + 1f / 2048))
        // 1 + 3 * 2^-11 lies halfway between 1 + 2^-10 and 1 + 2^-9: even is 1 + 2^-9.
        assertEquals(0x3C02, Float16.toBits(1f + 3f / 2048))
        // Half the smallest subnormal rounds to zero (even), a little more to the smallest subnormal.
        assertEquals(0x0000, Float16.toBits(2.9802322e-8f))
        assertEquals(0x0001, Float16.toBits(3.0e-8f))
        // The largest half plus half an ulp overflows to infinity.
        assertEquals(0x7C00, Float16.toBits(65520f))
    }

    @Test
    fun everyHalfRoundTripsExactly() {
        for (bits in 0 until 0x10000) {
            val f = Float16.toFloat(bits)
            if (!f.isNaN()) assertEquals("bits $bits", bits, Float16.toBits(f))
        }
    }

    @Test
    fun packsLittleEndianAndRefusesAWrongSize() {
        val src = floatArrayOf(1f, -2f, 0.5f)
        val bytes = ByteArray(6)
        Float16.pack(src, bytes)
        assertArrayEquals(byteArrayOf(0x00, 0x3C, 0x00, 0xC0.toByte(), 0x00, 0x38), bytes)
        val back = FloatArray(3)
        Float16.unpack(bytes, back)
        assertArrayEquals(src, back, 0f)
        assertThrowsIae { Float16.pack(src, ByteArray(12)) } // float32-sized: the old bug
        assertThrowsIae { Float16.unpack(bytes, FloatArray(2)) }
    }
}
