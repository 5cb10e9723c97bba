package org.mvit.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.lang.management.ManagementFactory

/**
 * A 640x480 camera frame through the shipped model's preprocessing allocates nothing per pixel (nor
 * per row): every buffer is allocated once and reused. Checked with the JVM's per-thread allocation
 * counter; a per-pixel object (the old rotation's Pair) would cost megabytes per frame.
 * The time per frame is a benchmark, not a test: `ci/test_core.sh --bench` (FrameBenchmark.kt).
 */
class FrameAllocationTest {
    private val threads = ManagementFactory.getThreadMXBean() as com.sun.management.ThreadMXBean
    private val shippedMeta = ModelMeta.fromJson(Golden.obj(Golden.objs(Golden.shipped, "models").first { it["app"] == "android" }, "meta"))

    private fun allocatedBy(repeats: Int, block: () -> Unit): Long {
        block() // buffers of this size are allocated here
        val before = threads.currentThreadAllocatedBytes
        repeat(repeats) { block() }
        return (threads.currentThreadAllocatedBytes - before) / repeats
    }

    @Test
    fun cameraFrameToModelInputReusesItsBuffers() {
        val f = SyntheticFrame(640, 480)
        val p = Preprocessor(shippedMeta)
        for (rotation in listOf(0, 90, 180, 270)) {
            val bytes = allocatedBy(4) { p.fromYuv(f.y, f.u, f.v, f.width, f.height, rotation) }
            assertTrue("rotation $rotation: $bytes bytes allocated per 640x480 frame", bytes < 16 * 1024)
        }
        val rgb = RgbImage(640, 480)
        val rotated = RgbImage(480, 640)
        FrameConverter.yuv420ToRgb(f.y, f.u, f.v, 640, 480, rgb)
        assertTrue(allocatedBy(4) { FrameConverter.yuv420ToRgb(f.y, f.u, f.v, 640, 480, rgb) } < 1024)
        assertTrue(allocatedBy(4) { FrameConverter.rotate(rgb, 90, rotated) } < 1024)
    }

    @Test
    fun reusedBuffersGiveTheSameInputAsFreshOnes() {
        val f = SyntheticFrame(640, 480)
        val reused = Preprocessor(shippedMeta)
        for (rotation in listOf(90, 0, 270, 180, 90)) {
            reused.fromYuv(f.y, f.u, f.v, f.width, f.height, rotation)
            val fresh = Preprocessor(shippedMeta).also { it.fromYuv(f.y, f.u, f.v, f.width, f.height, rotation) }
            assertArrayEquals("rotation $rotation", fresh.crop.data, reused.crop.data)
        }
    }

    @Test
    fun rotationMatchesThePerPixelDefinitionOnAFullFrame() {
        val f = SyntheticFrame(640, 480)
        val src = RgbImage(640, 480)
        FrameConverter.yuv420ToRgb(f.y, f.u, f.v, 640, 480, src)
        for (deg in listOf(0, 90, 180, 270, -90, 450)) {
            val w = FrameConverter.rotatedWidth(640, 480, deg)
            val h = FrameConverter.rotatedHeight(640, 480, deg)
            val out = RgbImage(w, h)
            FrameConverter.rotate(src, deg, out)
            val expected = ByteArray(w * h * 3)
            val d = ((deg % 360) + 360) % 360
            for (y in 0 until 480) for (x in 0 until 640) {
                val nx = when (d) { 0 -> x; 90 -> 479 - y; 180 -> 639 - x; else -> y }
                val ny = when (d) { 0 -> y; 90 -> x; 180 -> 479 - y; else -> 639 - x }
                for (c in 0 until 3) expected[(ny * w + nx) * 3 + c] = src.data[(y * 640 + x) * 3 + c]
            }
            assertArrayEquals("rotation $deg", expected, out.data)
        }
    }
}
