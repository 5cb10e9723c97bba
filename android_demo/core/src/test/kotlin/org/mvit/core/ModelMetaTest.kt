package org.mvit.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class ModelMetaTest {
    private fun example(variant: String) = Golden.text("model_meta_$variant.json")

    @Test
    fun parsesFloatExample() {
        val m = ModelMeta.parse(example("float"))
        assertEquals(listOf("cardboard", "glass", "metal", "paper", "plastic", "trash"), m.labels)
        assertEquals(256, m.preprocess.inputHeight)
        assertEquals(256, m.preprocess.resizeShort)
        assertEquals(Interpolation.BILINEAR, m.preprocess.interpolation)
        assertEquals(Layout.NHWC, m.input.layout)
        assertEquals(DType.FLOAT32, m.input.dtype)
        assertNull(m.input.quantization)
        assertEquals(OutputKind.LOGITS, m.output.kind)
        assertEquals(1 * 256 * 256 * 3, m.input.elementCount)
    }

    @Test
    fun parsesInt8Example() {
        val m = ModelMeta.parse(example("int8"))
        assertEquals(DType.INT8, m.input.dtype)
        assertEquals(DType.INT8, m.output.dtype)
        assertEquals(0.0625, m.output.quantization!!.scale, 0.0)
        assertEquals(-128, m.input.quantization!!.zeroPoint)
        assertEquals(-10, m.output.quantization!!.zeroPoint)
        assertFalse(m.input.normalizationInModel)
    }

    @Test
    fun parsesRawUint8Example() {
        val m = ModelMeta.parse(example("uint8_raw"))
        assertEquals(DType.UINT8, m.input.dtype)
        assertTrue(m.input.normalizationInModel)
        assertEquals(OutputKind.PROBABILITIES, m.output.kind)
    }

    @Test
    fun everyExampleBuildsAPreprocessor() {
        for (v in listOf("float", "int8", "uint8_raw")) {
            val p = Preprocessor(ModelMeta.parse(example(v)))
            assertTrue((p.floatInput != null) xor (p.byteInput != null))
        }
    }

    @Test
    fun derivesResizeShortLikeTheContract() {
        assertEquals(256, PreprocessSpec.resizeShortFor(224, 224, 0.875))
        assertEquals(288, PreprocessSpec.resizeShortFor(256, 256, 256.0 / 288.0))
        assertEquals(249, PreprocessSpec.resizeShortFor(224, 224, 0.9))
        val m = Json.parseObject(example("float")).toMutableMap()
        val pre = Golden.obj(m, "preprocess").toMutableMap()
        pre.remove("resize_short")
        pre["crop_fraction"] = 0.875
        assertEquals(293, PreprocessSpec.fromJson(pre).resizeShort)
    }

    private fun mutated(change: (MutableMap<String, Any?>) -> Unit): String {
        // Re-serialise through a tiny writer: only the shapes used by the metadata are needed.
        val m = deepCopy(Json.parseObject(example("float")))
        change(m)
        return write(m)
    }

    @Suppress("UNCHECKED_CAST")
    private fun deepCopy(v: Map<String, Any?>): MutableMap<String, Any?> =
        v.mapValuesTo(LinkedHashMap()) { (_, x) -> if (x is Map<*, *>) deepCopy(x as Map<String, Any?>) else x }

    private fun write(v: Any?): String = when (v) {
        null -> "null"
        is String -> "\"" + v.replace("\\", "\\\\").replace("\"", "\\\"") + "\""
        is Map<*, *> -> v.entries.joinToString(",", "{", "}") { write(it.key) + ":" + write(it.value) }
        is List<*> -> v.joinToString(",", "[", "]") { write(it) }
        else -> v.toString()
    }

    private fun assertRejected(expect: String, change: (MutableMap<String, Any?>) -> Unit) {
        try {
            ModelMeta.parse(mutated(change))
            fail("accepted a metadata file with $expect")
        } catch (e: MetaException) {
            assertTrue("message '${e.message}' should mention '$expect'", e.message!!.contains(expect))
        }
    }

    @Suppress("UNCHECKED_CAST")
    @Test
    fun rejectsInconsistentMetadata() {
        assertRejected("schema") { it["schema"] = "other/1" }
        assertRejected("newer") { it["schema"] = "mvit.model_meta/2" }
        assertRejected("num_classes") { it["num_classes"] = 5 }
        assertRejected("input_size") { (it["input"] as MutableMap<String, Any?>)["shape"] = listOf(1, 224, 224, 3) }
        assertRejected("channels") { (it["input"] as MutableMap<String, Any?>)["shape"] = listOf(1, 256, 256, 4) }
        assertRejected("quantization") { (it["input"] as MutableMap<String, Any?>)["dtype"] = "int8" }
        assertRejected("output.shape") { (it["output"] as MutableMap<String, Any?>)["shape"] = listOf(1, 7) }
        assertRejected("interpolation") { (it["preprocess"] as MutableMap<String, Any?>)["interpolation"] = "lanczos" }
        assertRejected("channel_order") { (it["preprocess"] as MutableMap<String, Any?>)["channel_order"] = "GRB" }
        assertRejected("std") { (it["preprocess"] as MutableMap<String, Any?>)["std"] = listOf(1.0, 0.0, 1.0) }
        assertRejected("layout") { (it["input"] as MutableMap<String, Any?>)["layout"] = "CHWN" }
        assertRejected("labels") { it["labels"] = listOf<String>() }
        try {
            ModelMeta.parse("{not json")
            fail("accepted invalid JSON")
        } catch (e: MetaException) {
            assertTrue(e.message!!.contains("JSON"))
        }
    }

    @Test
    fun labelsTxtMustAgreeWithMetadata() {
        val m = ModelMeta.parse(example("float"))
        assertEquals(m.labels, Labels.resolve(m, null))
        val txt = "Cardboard\r\nGlass\nMetal\nPaper\nPlastic\nTrash\n\n"
        assertEquals("Cardboard", Labels.resolve(m, txt)[0])
        assertEquals(6, Labels.parse(txt).size)
        try {
            Labels.resolve(m, "a\nb\n")
            fail("accepted 2 labels for 6 classes")
        } catch (e: MetaException) {
            assertTrue(e.message!!.contains("labels.txt"))
        }
    }
}
