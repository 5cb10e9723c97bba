package org.mvit.core

import java.nio.ByteBuffer

/** A deterministic camera frame in YUV_420_888 with NV21-style interleaved chroma (pixel stride 2, padded rows). */
class SyntheticFrame(val width: Int, val height: Int, rowPad: Int = 32) {
    private val yStride = width + rowPad
    private val cStride = width + rowPad
    private val data = ByteArray(yStride * height + cStride * (height / 2))

    init {
        for (y in 0 until height) for (x in 0 until width) data[y * yStride + x] = ((x * 7 + y * 3) and 0xFF).toByte()
        val c0 = yStride * height
        for (y in 0 until height / 2) for (x in 0 until width / 2) {
            data[c0 + y * cStride + 2 * x] = (96 + (x and 63)).toByte() // V
            data[c0 + y * cStride + 2 * x + 1] = (160 - (y and 63)).toByte() // U
        }
    }

    private fun plane(offset: Int, rowStride: Int, pixelStride: Int): YuvPlane {
        val b = ByteBuffer.wrap(data)
        b.position(offset)
        return YuvPlane(b.slice(), rowStride, pixelStride)
    }

    val y: YuvPlane = plane(0, yStride, 1)
    val v: YuvPlane = plane(yStride * height, cStride, 2)
    val u: YuvPlane = plane(yStride * height + 1, cStride, 2)
}
