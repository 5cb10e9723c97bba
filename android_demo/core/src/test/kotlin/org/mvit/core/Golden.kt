package org.mvit.core

import java.util.Base64

/** Access to the golden fixtures written by `export/apps/fixtures.py` (test resources `golden/`). */
object Golden {
    fun bytes(name: String): ByteArray {
        val s = Golden::class.java.classLoader.getResourceAsStream("golden/$name")
            ?: throw AssertionError("missing test resource golden/$name: run `python -m mvit.export.apps.fixtures`")
        return s.use { it.readBytes() }
    }

    fun text(name: String): String = String(bytes(name), Charsets.UTF_8)

    val fixtures: Map<String, Any?> by lazy { Json.parseObject(text("fixtures.json")) }

    /** The installed models' cases (`shipped_models.json`, `python -m mvit.export.apps.fixtures --shipped`). */
    val shipped: Map<String, Any?> by lazy { Json.parseObject(text("shipped_models.json")) }

    @Suppress("UNCHECKED_CAST")
    fun list(key: String): List<Map<String, Any?>> = fixtures[key] as List<Map<String, Any?>>

    fun b64(s: String): ByteArray = Base64.getDecoder().decode(s)

    fun fnv1a32(data: ByteArray, n: Int = data.size): Long {
        var h = 0x811C9DC5L
        for (i in 0 until n) {
            h = h xor (data[i].toLong() and 0xFF)
            h = (h * 0x01000193L) and 0xFFFFFFFFL
        }
        return h
    }

    fun floatFnv(values: FloatArray): Long {
        val b = ByteArray(values.size * 4)
        for (i in values.indices) {
            val bits = java.lang.Float.floatToRawIntBits(values[i])
            b[i * 4] = bits.toByte()
            b[i * 4 + 1] = (bits shr 8).toByte()
            b[i * 4 + 2] = (bits shr 16).toByte()
            b[i * 4 + 3] = (bits shr 24).toByte()
        }
        return fnv1a32(b)
    }

    /** The stored (un-rotated) pixels of a fixture image as an [RgbImage]. */
    fun rawImage(record: Map<String, Any?>): RgbImage {
        val w = (record["width"] as Number).toInt()
        val h = (record["height"] as Number).toInt()
        val img = RgbImage(w, h)
        FrameConverter.rgbaToRgb(bytes(record["raw"] as String), w, h, img)
        return img
    }

    @Suppress("UNCHECKED_CAST")
    fun obj(m: Map<String, Any?>, key: String): Map<String, Any?> = m[key] as Map<String, Any?>

    @Suppress("UNCHECKED_CAST")
    fun objs(m: Map<String, Any?>, key: String): List<Map<String, Any?>> = m[key] as List<Map<String, Any?>>

    @Suppress("UNCHECKED_CAST")
    fun objOrNullFix(m: Map<String, Any?>, key: String): Map<String, Any?>? = m[key] as Map<String, Any?>?

    fun long(m: Map<String, Any?>, key: String): Long = (m[key] as Number).toLong()
    fun dbl(m: Map<String, Any?>, key: String): Double = (m[key] as Number).toDouble()

    /** A [ModelMeta] whose input is exactly the fixture's contract (float32, [layout]). */
    fun metaFor(contract: Map<String, Any?>, layout: Layout = Layout.NCHW, dtype: DType = DType.FLOAT32, q: QuantParams? = null): ModelMeta {
        val pre = PreprocessSpec.fromJson(contract)
        val shape = if (layout == Layout.NCHW) listOf(1, 3, pre.inputHeight, pre.inputWidth) else listOf(1, pre.inputHeight, pre.inputWidth, 3)
        return ModelMeta(
            ModelMeta.SCHEMA, "test", listOf("a", "b"), pre,
            InputSpec("image", shape, layout, dtype, q, false),
            OutputSpec("logits", listOf(1, 2), DType.FLOAT32, null, OutputKind.LOGITS),
            "tflite", "fp32",
        )
    }
}
