package org.mvit.core

/** A `model_meta.json` that the app cannot use; the message says which field and why. */
class MetaException(message: String) : IllegalArgumentException(message)

enum class Interpolation { NEAREST, BILINEAR, BICUBIC }
enum class ChannelOrder { RGB, BGR }
enum class Layout { NCHW, NHWC }
enum class DType(val bytes: Int) { FLOAT32(4), FLOAT16(2), UINT8(1), INT8(1) }
enum class OutputKind { LOGITS, PROBABILITIES }

/** `real = (q - zeroPoint) * scale` */
data class QuantParams(val scale: Double, val zeroPoint: Int) {
    init {
        if (!(scale > 0.0) || scale.isInfinite()) throw MetaException("quantization scale must be > 0, got $scale")
    }

    companion object {
        fun fromJson(m: Map<String, Any?>?): QuantParams? = m?.let { QuantParams(it.num("scale"), it.int("zero_point")) }
    }
}

/** The preprocessing contract (`preprocess` in `model_meta.json`, `model/contract.py`). */
data class PreprocessSpec(
    val inputHeight: Int,
    val inputWidth: Int,
    val cropFraction: Double,
    val resizeShort: Int,
    val interpolation: Interpolation,
    val scale: Double,
    val mean: DoubleArray,
    val std: DoubleArray,
    val channelOrder: ChannelOrder,
) {
    init {
        if (inputHeight <= 0 || inputWidth <= 0) throw MetaException("input_size must be positive")
        if (!(cropFraction > 0.0 && cropFraction <= 1.0)) throw MetaException("crop_fraction must be in (0, 1]")
        if (resizeShort < minOf(inputHeight, inputWidth)) throw MetaException("resize_short must be >= min(input_size)")
        if (mean.size != 3 || std.size != 3 || std.any { it <= 0.0 }) throw MetaException("mean and std need 3 values, std > 0")
    }

    companion object {
        /** `round(min(input_size) / crop_fraction)` as `model/contract.py` computes it. */
        fun resizeShortFor(h: Int, w: Int, cropFraction: Double): Int = Math.floor(minOf(h, w) / cropFraction + 0.5).toInt()

        fun fromJson(m: Map<String, Any?>): PreprocessSpec {
            val size = m.intList("input_size")
            if (size.size != 2) throw MetaException("preprocess.input_size must be [H, W]")
            val crop = m.numOr("crop_fraction", 1.0)
            val interp = m.strOr("interpolation", "bilinear").uppercase()
            val order = m.strOr("channel_order", "RGB").uppercase()
            return PreprocessSpec(
                inputHeight = size[0],
                inputWidth = size[1],
                cropFraction = crop,
                resizeShort = if (m["resize_short"] != null) m.int("resize_short") else resizeShortFor(size[0], size[1], crop),
                interpolation = Interpolation.values().firstOrNull { it.name == interp }
                    ?: throw MetaException("preprocess.interpolation '$interp' is not nearest/bilinear/bicubic"),
                scale = m.numOr("scale", 1.0 / 255.0),
                mean = (if (m["mean"] != null) m.numList("mean") else listOf(0.0, 0.0, 0.0)).toDoubleArray(),
                std = (if (m["std"] != null) m.numList("std") else listOf(1.0, 1.0, 1.0)).toDoubleArray(),
                channelOrder = ChannelOrder.values().firstOrNull { it.name == order }
                    ?: throw MetaException("preprocess.channel_order '$order' is not RGB/BGR"),
            )
        }
    }

    override fun equals(other: Any?): Boolean = other is PreprocessSpec && toString() == other.toString()
    override fun hashCode(): Int = toString().hashCode()
    override fun toString(): String =
        "PreprocessSpec(${inputHeight}x$inputWidth, crop=$cropFraction, short=$resizeShort, $interpolation, " +
            "scale=$scale, mean=${mean.toList()}, std=${std.toList()}, $channelOrder)"
}

data class InputSpec(
    val name: String,
    val shape: List<Int>,
    val layout: Layout,
    val dtype: DType,
    val quantization: QuantParams?,
    val normalizationInModel: Boolean,
) {
    val elementCount: Int get() = shape.fold(1) { a, b -> a * b }
}

data class OutputSpec(
    val name: String,
    val shape: List<Int>,
    val dtype: DType,
    val quantization: QuantParams?,
    val kind: OutputKind,
)

/** Everything an app needs from `model_meta.json` (schema `mvit.model_meta/1`, docs/model_meta.md). */
data class ModelMeta(
    val schema: String,
    val architecture: String,
    val labels: List<String>,
    val preprocess: PreprocessSpec,
    val input: InputSpec,
    val output: OutputSpec,
    val format: String,
    val precision: String,
) {
    val numClasses: Int get() = labels.size

    companion object {
        const val SCHEMA = "mvit.model_meta/1"

        fun parse(text: String): ModelMeta = fromJson(
            try {
                Json.parseObject(text)
            } catch (e: Json.ParseException) {
                throw MetaException("model_meta.json is not valid JSON: ${e.message}")
            }
        )

        fun fromJson(m: Map<String, Any?>): ModelMeta {
            val schema = m.str("schema")
            if (!schema.startsWith("mvit.model_meta/")) throw MetaException("unknown schema '$schema'")
            if (schema != SCHEMA) throw MetaException("schema '$schema' is newer than this app ($SCHEMA)")
            val labels = (m["labels"] as? List<*>)?.map { it as? String ?: throw MetaException("labels must be strings") }
                ?: throw MetaException("'labels' must be a list of strings")
            if (labels.isEmpty()) throw MetaException("labels must not be empty")
            if (m["num_classes"] != null && m.int("num_classes") != labels.size) {
                throw MetaException("num_classes ${m.int("num_classes")} != ${labels.size} labels")
            }
            val pre = PreprocessSpec.fromJson(m.obj("preprocess"))
            val i = m.obj("input")
            val input = InputSpec(
                name = i.strOr("name", "image"),
                shape = i.intList("shape"),
                layout = parseEnum(i.str("layout"), "input.layout"),
                dtype = parseDType(i.str("dtype"), "input.dtype"),
                quantization = QuantParams.fromJson(i.objOrNull("quantization")),
                normalizationInModel = i.bool("normalization_in_model", false),
            )
            val o = m.obj("output")
            val output = OutputSpec(
                name = o.strOr("name", "logits"),
                shape = o.intList("shape"),
                dtype = parseDType(o.str("dtype"), "output.dtype"),
                quantization = QuantParams.fromJson(o.objOrNull("quantization")),
                kind = parseEnum(o.strOr("kind", "logits"), "output.kind"),
            )
            validate(pre, input, output, labels.size)
            return ModelMeta(schema, m.strOr("architecture", "unknown"), labels, pre, input, output,
                m.strOr("format", "tflite"), m.strOr("precision", "fp32"))
        }

        private fun validate(pre: PreprocessSpec, input: InputSpec, output: OutputSpec, n: Int) {
            if (input.shape.size != 4 || input.shape[0] != 1) throw MetaException("input.shape must be [1, ., ., .], got ${input.shape}")
            val (c, h, w) = when (input.layout) {
                Layout.NCHW -> Triple(input.shape[1], input.shape[2], input.shape[3])
                Layout.NHWC -> Triple(input.shape[3], input.shape[1], input.shape[2])
            }
            if (c != 3) throw MetaException("input has $c channels, expected 3")
            if (h != pre.inputHeight || w != pre.inputWidth) {
                throw MetaException("input.shape ${input.shape} does not match preprocess.input_size ${pre.inputHeight}x${pre.inputWidth}")
            }
            if ((input.dtype == DType.INT8 || input.dtype == DType.UINT8) && input.quantization == null && !input.normalizationInModel) {
                throw MetaException("input.dtype ${input.dtype} needs input.quantization")
            }
            if ((output.dtype == DType.INT8 || output.dtype == DType.UINT8) && output.quantization == null) {
                throw MetaException("output.dtype ${output.dtype} needs output.quantization")
            }
            if (output.shape.fold(1) { a, b -> a * b } != n) throw MetaException("output.shape ${output.shape} does not hold $n classes")
        }

        private fun parseDType(s: String, field: String): DType = when (s.lowercase()) {
            "float32" -> DType.FLOAT32
            "float16" -> DType.FLOAT16
            "uint8" -> DType.UINT8
            "int8" -> DType.INT8
            else -> throw MetaException("$field '$s' is not float32/float16/uint8/int8")
        }

        private inline fun <reified E : Enum<E>> parseEnum(s: String, field: String): E =
            enumValues<E>().firstOrNull { it.name.equals(s, ignoreCase = true) }
                ?: throw MetaException("$field '$s' is not one of ${enumValues<E>().joinToString("/") { it.name }}")
    }
}

/** `labels.txt`: one label per line, class index order; blank trailing lines are ignored. */
object Labels {
    fun parse(text: String): List<String> {
        val lines = text.replace("\r\n", "\n").split('\n').map { it.trim() }
        return lines.dropLastWhile { it.isEmpty() }
    }

    /** The labels to show: `labels.txt` when present and consistent with the metadata, else the metadata's. */
    fun resolve(meta: ModelMeta, labelsTxt: String?): List<String> {
        if (labelsTxt == null) return meta.labels
        val l = parse(labelsTxt)
        if (l.size != meta.numClasses) throw MetaException("labels.txt has ${l.size} labels, model_meta.json ${meta.numClasses}")
        return l
    }
}
