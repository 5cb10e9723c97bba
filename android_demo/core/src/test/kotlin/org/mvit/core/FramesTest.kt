package org.mvit.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Test
import java.nio.ByteBuffer

/** YUV_420_888 and RGBA frames with row/pixel strides, rotation, then the contract. */
class FramesTest {
    @Test
    fun yuvFramesMatchPython() {
        val frames = Golden.list("frames")
        assertEquals(3, frames.size)
        for (f in frames) {
            val name = f["file"] as String
            val w = (f["width"] as Number).toInt()
            val h = (f["height"] as Number).toInt()
            val data = Golden.bytes(name)
            val planes = Golden.obj(f, "planes")
            fun plane(key: String): YuvPlane {
                val p = Golden.obj(planes, key)
                val buf = ByteBuffer.wrap(data)
                buf.position((p["offset"] as Number).toInt())
                return YuvPlane(buf.slice(), (p["row_stride"] as Number).toInt(), (p["pixel_stride"] as Number).toInt())
            }
            val rgb = RgbImage(w, h)
            FrameConverter.yuv420ToRgb(plane("y"), plane("u"), plane("v"), w, h, rgb)
            assertArrayEquals("$name: YUV -> RGB", Golden.b64(f["rgb_b64"] as String), rgb.data)
            assertEquals(Golden.long(f, "rgb_fnv1a32"), Golden.fnv1a32(rgb.data))

            val meta = Golden.metaFor(Golden.obj(f, "contract"))
            val p = Preprocessor(meta)
            p.fromYuv(plane("y"), plane("u"), plane("v"), w, h, (f["rotation_degrees"] as Number).toInt())
            assertArrayEquals("$name: resized crop", Golden.b64(f["pixels_b64"] as String), p.crop.data)
            assertEquals("$name: tensor", Golden.long(f, "tensor_fnv1a32"), Golden.floatFnv(p.floatInput!!))
        }
    }

    @Test
    fun rgbaHonoursRowAndPixelStride() {
        // 2x2 image, pixel stride 4, 3 bytes of row padding, buffer position not at 0.
        val bytes = byteArrayOf(
            99, 99,
            1, 2, 3, 0, 4, 5, 6, 0, 77, 77, 77,
            7, 8, 9, 0, 10, 11, 12, 0, 77, 77, 77,
        )
        val buf = ByteBuffer.wrap(bytes)
        buf.position(2)
        val out = RgbImage(2, 2)
        FrameConverter.rgbaToRgb(buf.slice(), 2, 2, 11, 4, out)
        assertArrayEquals(byteArrayOf(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12), out.data)
    }

    @Test
    fun rotatesClockwise() {
        // 3x2:  a b c        90:  d a      180: f e d     270: c f
        //       d e f             e b           c b a          b e
        //                         f c                          a d
        val src = RgbImage(3, 2, ByteArray(18) { (it / 3 + 1).toByte() }) // a=1 .. f=6
        fun rot(deg: Int): List<Int> {
            val w = FrameConverter.rotatedWidth(3, 2, deg)
            val h = FrameConverter.rotatedHeight(3, 2, deg)
            val o = RgbImage(w, h)
            FrameConverter.rotate(src, deg, o)
            return (0 until w * h).map { o.data[it * 3].toInt() }
        }
        assertEquals(listOf(1, 2, 3, 4, 5, 6), rot(0))
        assertEquals(listOf(4, 1, 5, 2, 6, 3), rot(90))
        assertEquals(listOf(6, 5, 4, 3, 2, 1), rot(180))
        assertEquals(listOf(3, 6, 2, 5, 1, 4), rot(270))
        assertEquals(rot(270), rot(-90))
    }

    @Test
    fun yuvFullRangeExtremes() {
        val y = ByteBuffer.wrap(byteArrayOf(0, (255).toByte(), 0, (255).toByte()))
        val u = ByteBuffer.wrap(byteArrayOf((128).toByte()))
        val v = ByteBuffer.wrap(byteArrayOf((128).toByte()))
        val out = RgbImage(2, 2)
        FrameConverter.yuv420ToRgb(YuvPlane(y, 2, 1), YuvPlane(u, 1, 1), YuvPlane(v, 1, 1), 2, 2, out)
        assertArrayEquals(byteArrayOf(0, 0, 0, -1, -1, -1, 0, 0, 0, -1, -1, -1), out.data)
    }
}
