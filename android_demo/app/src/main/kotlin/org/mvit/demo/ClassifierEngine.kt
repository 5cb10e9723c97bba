package org.mvit.demo

import android.content.Context
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.LiteRtException
import com.google.ai.edge.litert.TensorBuffer
import org.mvit.core.DType
import org.mvit.core.Labels
import org.mvit.core.MetaException
import org.mvit.core.ModelMeta
import org.mvit.core.Postprocess
import org.mvit.core.Preprocessor
import java.io.Closeable
import java.io.FileNotFoundException

/** Which installed artifact to run: the asset names written by `export/app_install.py`. */
enum class ModelVariant(val modelAsset: String, val metaAsset: String, val title: String) {
    FLOAT("model.tflite", "model_meta.json", "float"),
    INT8("model_int8.tflite", "model_int8_meta.json", "int8"),
}

enum class AcceleratorChoice { CPU, GPU }

data class EngineConfig(val variant: ModelVariant = ModelVariant.FLOAT, val accelerator: AcceleratorChoice = AcceleratorChoice.CPU, val threads: Int = 4)

/**
 * One compiled LiteRT model with its input/output buffers, created once per configuration.
 * Only ever used from the single inference thread.
 */
class ClassifierEngine private constructor(
    val config: EngineConfig,
    val meta: ModelMeta,
    val labels: List<String>,
    private val model: CompiledModel,
    /** The accelerator actually in use, e.g. "GPU" or "CPU (GPU unavailable: …)". */
    val backend: String,
) : Closeable {
    private val inputs: List<TensorBuffer> = model.createInputBuffers()
    private val outputs: List<TensorBuffer> = model.createOutputBuffers()

    /** Preprocessing buffers for this model, allocated once. */
    val preprocessor = Preprocessor(meta)

    /** Runs the model on [preprocessor]'s current input; returns the dequantised output scores. */
    fun run(): FloatArray {
        val input = inputs[0]
        when (meta.input.dtype) {
            DType.FLOAT32, DType.FLOAT16 -> input.writeFloat(preprocessor.floatInput!!)
            // int8 and uint8 share the byte representation: the bytes hold the bit patterns.
            DType.INT8, DType.UINT8 -> input.writeInt8(preprocessor.byteInput!!)
        }
        model.run(inputs, outputs)
        val out = outputs[0]
        return when (meta.output.dtype) {
            DType.FLOAT32, DType.FLOAT16 -> Postprocess.decode(meta.output, out.readFloat(), null)
            DType.INT8, DType.UINT8 -> Postprocess.decode(meta.output, null, out.readInt8())
        }
    }

    override fun close() {
        inputs.forEach { it.close() }
        outputs.forEach { it.close() }
        model.close()
    }

    companion object {
        fun isInstalled(context: Context, variant: ModelVariant): Boolean =
            context.assets.list("")?.let { variant.modelAsset in it && variant.metaAsset in it } ?: false

        fun readMeta(context: Context, variant: ModelVariant): ModelMeta {
            val text = try {
                context.assets.open(variant.metaAsset).bufferedReader().use { it.readText() }
            } catch (e: FileNotFoundException) {
                throw MetaException("${variant.metaAsset} is not installed")
            }
            return ModelMeta.parse(text)
        }

        fun create(context: Context, config: EngineConfig): ClassifierEngine {
            val meta = readMeta(context, config.variant)
            val labelsTxt = try {
                context.assets.open("labels.txt").bufferedReader().use { it.readText() }
            } catch (e: FileNotFoundException) {
                null
            }
            val labels = Labels.resolve(meta, labelsTxt)
            val cpu = CompiledModel.Options(Accelerator.CPU).apply {
                cpuOptions = CompiledModel.CpuOptions(numThreads = config.threads)
            }
            if (config.accelerator == AcceleratorChoice.GPU) {
                // GPU alone, so that a missing/unsupported GPU throws instead of silently running
                // on the CPU while claiming "GPU"; then fall back and say so.
                try {
                    val gpu = CompiledModel.create(context.assets, config.variant.modelAsset, CompiledModel.Options(Accelerator.GPU))
                    return ClassifierEngine(config, meta, labels, gpu, "GPU")
                } catch (e: LiteRtException) {
                    val model = CompiledModel.create(context.assets, config.variant.modelAsset, cpu)
                    return ClassifierEngine(config, meta, labels, model, "CPU ×${config.threads} (GPU unavailable: ${e.message ?: "error"})")
                }
            }
            val model = CompiledModel.create(context.assets, config.variant.modelAsset, cpu)
            return ClassifierEngine(config, meta, labels, model, "CPU ×${config.threads}")
        }
    }
}
