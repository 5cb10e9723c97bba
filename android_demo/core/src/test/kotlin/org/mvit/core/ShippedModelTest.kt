package org.mvit.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File
import java.nio.ByteBuffer
import java.security.MessageDigest

/**
 * The models installed in the apps (`golden/shipped_models.json`): at each model's own contract,
 * read from its recorded `model_meta.json`, this core's preprocessing of the fixture images must feed
 * the model exactly the recorded input bytes, and its post-processing must turn the artifact's
 * recorded raw outputs into the recorded top-3. When the app's assets are reachable, the installed
 * files must be the ones the cases were recorded from.
 */
class ShippedModelTest {
    private val images = Golden.list("images").associateBy { it["file"] as String }
    private val models = Golden.objs(Golden.shipped, "models")

    private fun meta(model: Map<String, Any?>): ModelMeta = ModelMeta.fromJson(Golden.obj(model, "meta"))

    private fun what(model: Map<String, Any?>, case: Map<String, Any?>) = "${model["artifact"]} on ${case["image"]}"

    /** `android_demo/app/src/main/assets`, from `-Dmvit.appAssets` (ci/test_core.sh) or the working directory. */
    private fun installedAssets(): File? =
        listOfNotNull(System.getProperty("mvit.appAssets"), "../app/src/main/assets", "android_demo/app/src/main/assets")
            .map { File(it) }.firstOrNull { it.isDirectory }

    private fun sha256(f: File): String =
        MessageDigest.getInstance("SHA-256").digest(f.readBytes()).joinToString("") { "%02x".format(it) }

    @Test
    fun everyShippedModelHasCases() {
        assertEquals("mvit.app_fixtures.shipped/1", Golden.shipped["schema"])
        assertTrue("the Android models have recorded cases", models.any { it["app"] == "android" })
        for (m in models) assertTrue("${m["artifact"]}: cases", Golden.objs(m, "cases").size >= 3)
    }

    @Test
    fun casesWereRecordedFromTheInstalledFiles() {
        val assets = installedAssets() ?: return // app sources not reachable from here: the Python test checks them
        val recorded = models.filter { it["app"] == "android" }.associateBy { (it["artifact"] as String).substringAfterLast('/') }
        val installed = assets.listFiles { f -> f.name.endsWith(".tflite") }!!.map { it.name }.sorted()
        assertEquals("installed models without recorded cases: run `$REGEN`", installed, recorded.keys.sorted())
        for ((name, m) in recorded) {
            assertEquals("$name changed since its cases were recorded: run `$REGEN`", m["artifact_sha256"], sha256(File(assets, name)))
            val metaFile = File(assets, (m["meta_file"] as String).substringAfterLast('/'))
            assertEquals("$metaFile differs from the recorded one: run `$REGEN`", Golden.obj(m, "meta"), Json.parseObject(metaFile.readText()))
        }
    }

    @Test
    fun preprocessingAtTheModelsContractFeedsTheRecordedInput() {
        for (m in models) {
            val meta = meta(m)
            val p = Preprocessor(meta)
            for (c in Golden.objs(m, "cases")) {
                val w = what(m, c)
                val rec = images.getValue(c["image"] as String)
                val width = (rec["width"] as Number).toInt()
                val height = (rec["height"] as Number).toInt()
                val g = CropGeometry.of((rec["upright_width"] as Number).toInt(), (rec["upright_height"] as Number).toInt(), meta.preprocess)
                val eg = Golden.obj(c, "geometry")
                assertEquals(w, listOf("resized_width", "resized_height", "left", "top", "width", "height").map { Golden.long(eg, it).toInt() },
                    listOf(g.resizedWidth, g.resizedHeight, g.left, g.top, g.width, g.height))

                p.fromRgba(ByteBuffer.wrap(Golden.bytes(rec["raw"] as String)), width, height, width * 4, 4, (rec["rotation_degrees"] as Number).toInt())
                val n = p.crop.width * p.crop.height * 3
                assertEquals("$w: pixel sum", Golden.long(c, "pixels_sum"), (0 until n).sumOf { (p.crop.data[it].toInt() and 0xFF).toLong() })
                assertEquals("$w: pixel checksum", Golden.long(c, "pixels_fnv1a32"), Golden.fnv1a32(p.crop.data, n))

                val input = Golden.obj(c, "input")
                assertEquals("$w: input dtype", input["dtype"], meta.input.dtype.name.lowercase())
                assertEquals("$w: input shape", (input["shape"] as List<*>).map { (it as Number).toInt() }, meta.input.shape)
                val fnv = when (meta.input.dtype) {
                    DType.FLOAT32 -> Golden.floatFnv(p.floatInput!!)
                    DType.INT8, DType.UINT8 -> Golden.fnv1a32(p.byteInput!!)
                    DType.FLOAT16 -> continue // half-precision packing happens in the app module
                }
                assertEquals("$w: model input bytes (${meta.input.dtype}, ${meta.input.layout})", Golden.long(input, "fnv1a32"), fnv)
            }
        }
    }

    @Test
    fun postprocessingOfTheRecordedOutputsGivesTheRecordedTop3() {
        for (m in models) {
            val meta = meta(m)
            val spec = meta.output
            val labels = Labels.resolve(meta, null)
            for (c in Golden.objs(m, "cases")) {
                val w = what(m, c)
                val out = Golden.obj(c, "output")
                val values = (out["values"] as List<*>).map { it as Number }
                val quantized = spec.dtype == DType.INT8 || spec.dtype == DType.UINT8
                assertEquals("$w: output quantisation", QuantParams.fromJson(Golden.objOrNullFix(out, "quantization")), if (quantized) spec.quantization else null)
                val decoded = if (quantized) Postprocess.decode(spec, null, ByteArray(values.size) { values[it].toInt().toByte() })
                else Postprocess.decode(spec, FloatArray(values.size) { values[it].toFloat() }, null)
                val deq = (c["dequantized"] as List<*>).map { (it as Number).toFloat() }
                assertArrayEquals("$w: dequantised", deq.toFloatArray(), decoded, 0f)
                val top = Postprocess.classify(decoded, spec.kind, labels, 3)
                val expected = Golden.objs(c, "top3")
                assertEquals(w, expected.map { (it["index"] as Number).toInt() }, top.map { it.index })
                assertEquals(w, expected.map { it["label"] }, top.map { it.label })
                expected.zip(top).forEach { (e, t) -> assertEquals(w, Golden.dbl(e, "score"), t.score, 1e-6) }
            }
        }
    }

    private companion object {
        const val REGEN = "python -m mvit.apps.fixtures --shipped --app android"
    }
}
