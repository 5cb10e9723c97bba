package org.mvit.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

class PostprocessTest {
    @Test
    fun goldenOutputsDecodeToTheSameTop3() {
        val cases = Golden.list("postprocess")
        assertTrue(cases.size >= 5)
        for (c in cases) {
            val name = c["name"] as String
            val dtype = when (c["dtype"]) { "int8" -> DType.INT8; "uint8" -> DType.UINT8; else -> DType.FLOAT32 }
            val values = (c["values"] as List<*>).map { (it as Number).toDouble() }
            val labels = listOf("cardboard", "glass", "metal", "paper", "plastic", "trash")
            val kind = if (c["kind"] == "logits") OutputKind.LOGITS else OutputKind.PROBABILITIES
            val q = QuantParams.fromJson(Golden.objOrNullFix(c, "quantization"))
            val spec = OutputSpec("logits", listOf(1, 6), dtype, q, kind)
            val out = if (dtype == DType.FLOAT32) Postprocess.decode(spec, FloatArray(6) { values[it].toFloat() }, null)
            else Postprocess.decode(spec, null, ByteArray(6) { values[it].toInt().toByte() })
            val deq = (c["dequantized"] as List<*>).map { (it as Number).toFloat() }
            assertArrayEquals("$name: dequantized", deq.toFloatArray(), out, 0f)
            val probs = (c["probabilities"] as List<*>).map { (it as Number).toDouble() }
            assertArrayEquals("$name: probabilities", probs.toDoubleArray(), Postprocess.scores(out, kind), 1e-6)
            val top = Postprocess.classify(out, kind, labels, 3)
            val expected = Golden.objs(c, "top3")
            assertEquals(name, expected.map { (it["index"] as Number).toInt() }, top.map { it.index })
            assertEquals(name, expected.map { it["label"] }, top.map { it.label })
            expected.zip(top).forEach { (e, t) -> assertEquals(name, Golden.dbl(e, "score"), t.score, 1e-6) }
        }
    }

    @Test
    fun topKHandlesTiesAndShortInputs() {
        assertArrayEquals(intArrayOf(1, 3, 0), Postprocess.topK(doubleArrayOf(0.1, 0.5, 0.0, 0.5), 3))
        assertArrayEquals(intArrayOf(0), Postprocess.topK(doubleArrayOf(0.3), 3))
        assertEquals(0, Postprocess.softmax(FloatArray(0)).size)
        val s = Postprocess.softmax(floatArrayOf(1000f, 1000f))
        assertEquals(0.5, s[0], 1e-12)
    }

    @Test
    fun uint8OutputIsReadUnsigned() {
        val d = Postprocess.dequantize(byteArrayOf(-1, 0, 128.toByte()), DType.UINT8, QuantParams(1.0 / 256, 0))
        assertArrayEquals(floatArrayOf(255f / 256f, 0f, 0.5f), d, 0f)
    }

    @Test
    fun rollingAverageAndFps() {
        val r = RollingAverage(3)
        assertTrue(r.average.isNaN())
        r.add(1.0); r.add(2.0); r.add(3.0)
        assertEquals(2.0, r.average, 1e-12)
        r.add(10.0)
        assertEquals(5.0, r.average, 1e-12)
        assertEquals(10.0, r.last, 0.0)
        assertEquals(3, r.count)

        val st = FrameStats(4)
        assertEquals(0.0, st.fps, 0.0)
        for (i in 0 until 10) st.record(1.0, 2.0, 3.0, i * 50_000_000L) // 20 frames per second
        assertEquals(20.0, st.fps, 1e-9)
        assertEquals(3.0, st.totalMs.average, 1e-12)
        st.reset()
        assertEquals(0.0, st.fps, 0.0)
    }
}
