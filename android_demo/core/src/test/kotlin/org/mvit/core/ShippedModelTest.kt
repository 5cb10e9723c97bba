package org.mvit.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File
import java.nio.ByteBuffer

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

    /** `android_demo/app/src/main/assets`, from `-Dmvit.appAssets` (ci/test_core.sh, Gradle) or the working directory. */
    private fun installedAssets(): File {
        val candidates = listOfNotNull(System.getProperty("mvit.appAssets"), "../app/src/main/assets", "android_demo/app/src/main/assets")
        return candidates.map { File(it) }.firstOrNull { it.isDirectory }
            ?: throw AssertionError("the app's assets folder is not at any of $candidates: run with -Dmvit.appAssets=android_demo/app/src/main/assets")
    }

    private fun sha256(f: File): String = f.inputStream().use { sha256Hex(it) }

    @Test
    fun everyShippedModelHasCases() {
        assertEquals("mvit.app_fixtures.shipped/1", Golden.shipped["schema"])
        assertTrue("the Android models have recorded cases", models.any { it["app"] == "android" })
        for (m in models) assertTrue("${m["artifact"]}: cases", Golden.objs(m, "cases").size >= 3)
    }

    @Test
    fun bothVariantsAreInstalledWithTheirMetadata() {
        val assets = installedAssets()
        for (v in ModelVariant.values()) {
            assertTrue("${v.modelAsset} is not installed in $assets: run `mvit-export --app android`", File(assets, v.modelAsset).isFile)
            assertEquals("${v.metaAsset}: precision fits the ${v.title} slot", v == ModelVariant.INT8,
                ModelMeta.parse(File(assets, v.metaAsset).readText()).precision in setOf("int8", "dynamic"))
        }
        assertTrue("labels.txt is installed", File(assets, "labels.txt").isFile)
    }

    @Test
    fun theBenchmarkInputIsAGoldenImageWithRecordedCases() {
        val assets = installedAssets()
        val input = BenchmarkInput.parse(File(assets, BenchmarkInput.JSON_ASSET).readText())
        val rgba = File(assets, BenchmarkInput.RGBA_ASSET).readBytes()
        input.check(rgba)
        val rec = images[input.image] ?: throw AssertionError("${input.image} is not a golden fixture image: run `python -m mvit.export.apps.fixtures`")
        assertArrayEquals("benchmark_input.rgba differs from ${rec["raw"]}: run `python -m mvit.export.apps.fixtures`", Golden.bytes(rec["raw"] as String), rgba)
        assertEquals(listOf(rec["width"], rec["height"], rec["rotation_degrees"]).map { (it as Number).toInt() }, listOf(input.width, input.height, input.rotationDegrees))
        for (m in models.filter { it["app"] == "android" }) {
            assertTrue("${m["artifact"]}: no recorded case on ${input.image}", Golden.objs(m, "cases").any { it["image"] == input.image })
        }
        assertThrowsMeta { input.check(rgba.copyOf(rgba.size - 4)) }
        assertThrowsMeta { BenchmarkInput.parse("""{"image": "x.png", "width": 0, "height": 2, "rotation_degrees": 0}""") }
        assertThrowsMeta { BenchmarkInput.parse("""{"image": "x.png", "width": 2, "height": 2, "rotation_degrees": 45}""") }
    }

    private fun assertThrowsMeta(block: () -> Unit) {
        try {
            block()
        } catch (e: IllegalArgumentException) { // MetaException, or require() for the rotation
            return
        }
        throw AssertionError("expected a refusal")
    }

    @Test
    fun casesWereRecordedFromTheInstalledFiles() {
        val assets = installedAssets()
        val recorded = models.filter { it["app"] == "android" }.associateBy { (it["artifact"] as String).substringAfterLast('/') }
        val installed = assets.listFiles { f -> f.name.endsWith(".tflite") }!!.map { it.name }.sorted()
        assertTrue("no .tflite installed in $assets", installed.isNotEmpty())
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

                // What this core produced, against the record: element count and representation.
                val input = Golden.obj(c, "input")
                val elements = (input["shape"] as List<*>).fold(1) { acc, d -> acc * (d as Number).toInt() }
                val produced = p.floatInput?.size ?: p.byteInput!!.size
                assertEquals("$w: input elements", elements, produced)
                assertEquals("$w: float or byte input for ${input["dtype"]}", input["dtype"] in setOf("float32", "float16"), p.floatInput != null)
                val fnv = when (meta.input.dtype) {
                    DType.FLOAT32 -> Golden.floatFnv(p.floatInput!!)
                    DType.INT8, DType.UINT8 -> Golden.fnv1a32(p.byteInput!!)
                    DType.FLOAT16 -> Golden.fnv1a32(ByteArray(produced * 2).also { Float16.pack(p.floatInput!!, it) })
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
                // The metadata the app reads, against the artifact's own output tensor (not against itself).
                assertEquals("$w: output quantisation of the metadata vs the artifact", QuantParams.fromJson(Golden.objOrNullFix(m, "output_quantization_in_artifact")),
                    if (quantized) spec.quantization else null)
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
        const val REGEN = "python -m mvit.export.apps.fixtures --shipped --app android"
    }
}
