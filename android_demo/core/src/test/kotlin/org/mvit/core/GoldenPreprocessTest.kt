package org.mvit.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.nio.ByteBuffer

/**
 * The app's preprocessing against `model/preprocess.py`, on the golden fixtures: the resized and
 * cropped pixels, the float tensor and its int8/uint8 quantisation must match exactly.
 */
class GoldenPreprocessTest {
    private val images = Golden.list("images").associateBy { it["file"] as String }

    private fun upright(imageFile: String): RgbImage {
        val rec = images.getValue(imageFile)
        val raw = Golden.rawImage(rec)
        val rot = (rec["rotation_degrees"] as Number).toInt()
        if (rot == 0) return raw
        val out = RgbImage(FrameConverter.rotatedWidth(raw.width, raw.height, rot), FrameConverter.rotatedHeight(raw.width, raw.height, rot))
        return out.also { FrameConverter.rotate(raw, rot, it) }
    }

    private fun assertPixels(case: Map<String, Any?>, crop: RgbImage, what: String) {
        val n = crop.width * crop.height * 3
        val b64 = case["pixels_b64"] as String?
        if (b64 != null) {
            val expected = Golden.b64(b64)
            assertEquals("$what: pixel count", expected.size, n)
            var bad = 0
            var maxDiff = 0
            var first = -1
            for (i in 0 until n) {
                val d = Math.abs((expected[i].toInt() and 0xFF) - (crop.data[i].toInt() and 0xFF))
                if (d != 0) {
                    bad++
                    if (first < 0) first = i
                    maxDiff = maxOf(maxDiff, d)
                }
            }
            assertEquals("$what: $bad pixels differ from PIL (max diff $maxDiff, first at HWC index $first)", 0, bad)
        }
        var sum = 0L
        for (i in 0 until n) sum += crop.data[i].toInt() and 0xFF
        assertEquals("$what: pixel sum", Golden.long(case, "pixels_sum"), sum)
        assertEquals("$what: pixel checksum", Golden.long(case, "pixels_fnv1a32"), Golden.fnv1a32(crop.data, n))
    }

    private fun assertTensor(case: Map<String, Any?>, crop: RgbImage, pre: PreprocessSpec, what: String) {
        val h = pre.inputHeight
        val w = pre.inputWidth
        val t = FloatArray(3 * h * w)
        TensorPacker.normalize(crop, pre, Layout.NCHW, t)
        for (s in Golden.objs(case, "samples")) {
            val (c, y, x) = (s["chw"] as List<*>).map { (it as Number).toInt() }
            val expected = Golden.dbl(s, "value").toFloat()
            assertEquals("$what: tensor[$c,$y,$x]", expected, t[(c * h + y) * w + x], 0f)
        }
        assertEquals("$what: tensor checksum (float32 bits)", Golden.long(case, "tensor_fnv1a32"), Golden.floatFnv(t))
        val sum = t.fold(0.0) { a, v -> a + v }
        val expSum = Golden.dbl(case, "tensor_sum")
        assertEquals("$what: tensor sum", expSum, sum, 1e-9 * maxOf(1.0, Math.abs(expSum)))

        // NHWC holds the same values, transposed.
        val nhwc = FloatArray(3 * h * w)
        TensorPacker.normalize(crop, pre, Layout.NHWC, nhwc)
        for (c in 0 until 3) for (y in 0 until h) for (x in 0 until w) {
            assertEquals(t[(c * h + y) * w + x], nhwc[(y * w + x) * 3 + c], 0f)
        }

        val quant = Golden.obj(case, "quantized")
        for ((dtypeName, dtype) in listOf("int8" to DType.INT8, "uint8" to DType.UINT8)) {
            val qc = Golden.obj(quant, dtypeName)
            val qp = QuantParams(Golden.dbl(qc, "scale"), (qc["zero_point"] as Number).toInt())
            val q = ByteArray(3 * h * w)
            TensorPacker.normalizeQuantized(crop, pre, Layout.NCHW, qp, dtype, FloatArray(3 * h * w), q)
            val asInt = { b: Byte -> if (dtype == DType.UINT8) b.toInt() and 0xFF else b.toInt() }
            assertEquals("$what: $dtypeName sum", Golden.long(qc, "sum"), q.fold(0L) { a, b -> a + asInt(b) })
            assertEquals("$what: $dtypeName checksum", Golden.long(qc, "fnv1a32"), Golden.fnv1a32(q))
            val samples = (qc["samples"] as List<*>).map { (it as Number).toInt() }
            Golden.objs(case, "samples").forEachIndexed { i, s ->
                val (c, y, x) = (s["chw"] as List<*>).map { (it as Number).toInt() }
                assertEquals("$what: $dtypeName[$c,$y,$x]", samples[i], asInt(q[(c * h + y) * w + x]))
            }
        }
    }

    @Test
    fun everyImageAndContractMatchesPython() {
        val cases = Golden.list("cases")
        assertTrue("fixtures hold cases", cases.size >= 10)
        val resampler = Resampler()
        for (case in cases) {
            val what = "${case["image"]} / ${case["contract_name"]}"
            val pre = PreprocessSpec.fromJson(Golden.obj(case, "contract"))
            val img = upright(case["image"] as String)
            val g = CropGeometry.of(img.width, img.height, pre)
            val eg = Golden.obj(case, "geometry")
            assertEquals(what, listOf("resized_width", "resized_height", "left", "top", "width", "height").map { Golden.long(eg, it).toInt() },
                listOf(g.resizedWidth, g.resizedHeight, g.left, g.top, g.width, g.height))
            val crop = RgbImage(pre.inputWidth, pre.inputHeight)
            resampler.resizeCrop(img, g.resizedWidth, g.resizedHeight, g.left, g.top, crop, pre.interpolation)
            assertPixels(case, crop, what)
            assertTensor(case, crop, pre, what)
        }
    }

    @Test
    fun preprocessorEndToEndFromStridedRgbaWithRotation() {
        // The camera path: RGBA rows with padding, rotated by rotationDegrees, into the model buffer.
        for (case in Golden.list("cases")) {
            val rec = images.getValue(case["image"] as String)
            val w = (rec["width"] as Number).toInt()
            val h = (rec["height"] as Number).toInt()
            val rgba = Golden.bytes(rec["raw"] as String)
            val rowStride = w * 4 + 12
            val padded = ByteArray(rowStride * h) { 0x55 }
            for (y in 0 until h) System.arraycopy(rgba, y * w * 4, padded, y * rowStride, w * 4)
            val meta = Golden.metaFor(Golden.obj(case, "contract"))
            val p = Preprocessor(meta)
            p.fromRgba(ByteBuffer.wrap(padded), w, h, rowStride, 4, (rec["rotation_degrees"] as Number).toInt())
            assertPixels(case, p.crop, "${case["image"]} / ${case["contract_name"]} (Preprocessor)")
            assertEquals(Golden.long(case, "tensor_fnv1a32"), Golden.floatFnv(p.floatInput!!))
        }
    }

    @Test
    fun preprocessorQuantizedAndRawInputs() {
        val case = Golden.list("cases").first { it["contract_name"] == "bilinear_24x32_meanstd_rgb" }
        val img = upright(case["image"] as String)
        val qc = Golden.obj(Golden.obj(case, "quantized"), "int8")
        val q = QuantParams(Golden.dbl(qc, "scale"), (qc["zero_point"] as Number).toInt())
        val meta = Golden.metaFor(Golden.obj(case, "contract"), Layout.NCHW, DType.INT8, q)
        val p = Preprocessor(meta)
        p.fromUpright(img)
        assertEquals(Golden.long(qc, "fnv1a32"), Golden.fnv1a32(p.byteInput!!))

        // uint8 input with normalisation inside the model: the raw crop, channel order applied.
        val raw = meta.copy(input = meta.input.copy(dtype = DType.UINT8, quantization = null, normalizationInModel = true, layout = Layout.NHWC, shape = listOf(1, 24, 32, 3)))
        val pr = Preprocessor(raw)
        pr.fromUpright(img)
        assertArrayEquals(Golden.b64(case["pixels_b64"] as String), pr.byteInput)
    }

    @Test
    fun bgrSwapsRedAndBlueAfterNormalisation() {
        val px = RgbImage(1, 1, byteArrayOf(10, 20, (200).toByte()))
        val pre = PreprocessSpec(1, 1, 1.0, 1, Interpolation.BILINEAR, 1.0 / 255, doubleArrayOf(0.1, 0.2, 0.3), doubleArrayOf(0.5, 0.5, 0.25), ChannelOrder.BGR)
        val out = FloatArray(3)
        TensorPacker.normalize(px, pre, Layout.NCHW, out)
        assertEquals((200f * (1f / 255f) - 0.3f) / 0.25f, out[0], 0f)
        assertEquals((20f * (1f / 255f) - 0.2f) / 0.5f, out[1], 0f)
        assertEquals((10f * (1f / 255f) - 0.1f) / 0.5f, out[2], 0f)
    }

    @Test
    fun quantisationRoundsHalfToEvenAndClamps() {
        val q = QuantParams(0.5, 0)
        assertEquals(2, TensorPacker.quantize(1.25f, q, DType.INT8).toInt()) // 2.5 -> 2
        assertEquals(4, TensorPacker.quantize(1.75f, q, DType.INT8).toInt()) // 3.5 -> 4
        assertEquals(127, TensorPacker.quantize(1000f, q, DType.INT8).toInt())
        assertEquals(-128, TensorPacker.quantize(-1000f, q, DType.INT8).toInt())
        assertEquals(255, TensorPacker.quantize(1000f, QuantParams(0.5, 10), DType.UINT8).toInt() and 0xFF)
        assertEquals(0, TensorPacker.quantize(-1000f, QuantParams(0.5, 10), DType.UINT8).toInt())
    }

    @Test
    fun cropGeometryMatchesPythonRounding() {
        val pre = PreprocessSpec(256, 256, 1.0, 256, Interpolation.BILINEAR, 1.0 / 255, doubleArrayOf(0.0, 0.0, 0.0), doubleArrayOf(1.0, 1.0, 1.0), ChannelOrder.RGB)
        assertEquals(CropGeometry(341, 256, 42, 0, 256, 256), CropGeometry.of(640, 480, pre))
        assertEquals(CropGeometry(256, 455, 0, 99, 256, 256), CropGeometry.of(720, 1280, pre))
        // 5 * 256 / 10 = 128.0 exactly; 3 * 256 / 2 = 384 -> 384; round-half-even case: 1 * 2.5 -> 2
        val small = PreprocessSpec(2, 2, 1.0, 2, Interpolation.BILINEAR, 1.0 / 255, doubleArrayOf(0.0, 0.0, 0.0), doubleArrayOf(1.0, 1.0, 1.0), ChannelOrder.RGB)
        assertEquals(2, CropGeometry.of(5, 4, small).resizedWidth) // round(2.5) == 2 in Python
        assertEquals(4, CropGeometry.of(7, 4, small).resizedWidth) // round(3.5) == 4
    }
}
