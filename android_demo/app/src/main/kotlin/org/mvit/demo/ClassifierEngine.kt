package org.mvit.demo

import android.content.Context
import android.os.SystemClock
import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.BuiltinNpuAcceleratorProvider
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.LiteRtException
import com.google.ai.edge.litert.TensorBuffer
import org.mvit.core.AcceleratorChoice
import org.mvit.core.AcceleratorOutcome
import org.mvit.core.DType
import org.mvit.core.Float16
import org.mvit.core.Labels
import org.mvit.core.MetaException
import org.mvit.core.ModelMeta
import org.mvit.core.ModelVariant
import org.mvit.core.Postprocess
import org.mvit.core.Preprocessor
import org.mvit.core.Settings
import org.mvit.core.sha256Hex
import java.io.Closeable
import java.io.FileNotFoundException

/**
 * One compiled LiteRT model with its input/output buffers and preprocessing buffers, created once
 * per (variant, accelerator, threads). Only ever used from the single inference thread.
 */
class ClassifierEngine private constructor(
    val variant: ModelVariant,
    val meta: ModelMeta,
    val labels: List<String>,
    private val model: CompiledModel,
    private val env: Environment?,
    /** What was asked and what compiled the model (after any fallback). */
    val outcome: AcceleratorOutcome,
    /** Time to load and compile the model, milliseconds. */
    val loadMs: Double,
) : Closeable {
    private val inputs: List<TensorBuffer> = model.createInputBuffers()
    private val outputs: List<TensorBuffer> = model.createOutputBuffers()

    /** Preprocessing buffers for this model, allocated once. */
    val preprocessor = Preprocessor(meta)

    /** float16 input bytes (two per value), allocated once; null for other input types. */
    private val halfInput: ByteArray? = if (meta.input.dtype == DType.FLOAT16) ByteArray(meta.input.elementCount * 2) else null

    /** Copies [preprocessor]'s current input into the model's input buffer. */
    fun writeInput() {
        when (meta.input.dtype) {
            DType.FLOAT32 -> inputs[0].writeFloat(preprocessor.floatInput!!)
            // writeInt8 copies bytes unchanged; writeFloat would copy four bytes per value.
            DType.FLOAT16 -> inputs[0].writeInt8(halfInput!!.also { Float16.pack(preprocessor.floatInput!!, it) })
            // int8 and uint8 share the byte representation: the bytes hold the bit patterns.
            DType.INT8, DType.UINT8 -> inputs[0].writeInt8(preprocessor.byteInput!!)
        }
    }

    /** The inference alone, on the input already written (what the benchmark times). */
    fun invoke() = model.run(inputs, outputs)

    /** The dequantised output scores of the last [invoke]. */
    fun readScores(): FloatArray = when (meta.output.dtype) {
        DType.FLOAT32 -> Postprocess.decode(meta.output, outputs[0].readFloat(), null)
        DType.INT8, DType.UINT8 -> Postprocess.decode(meta.output, null, outputs[0].readInt8())
        DType.FLOAT16 -> throw IllegalStateException("unreachable: create() refuses float16 outputs")
    }

    /** Writes the input, runs the model, returns the scores. */
    fun run(): FloatArray {
        writeInput()
        invoke()
        return readScores()
    }

    override fun close() {
        inputs.forEach { it.close() }
        outputs.forEach { it.close() }
        model.close()
        env?.close()
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

        /** sha256 of the installed artifact (the benchmark JSON's `artifact_sha256`). */
        fun artifactSha256(context: Context, variant: ModelVariant): String =
            context.assets.open(variant.modelAsset).use { sha256Hex(it) }

        /**
         * Loads [variant] on the accelerator in [settings]. GPU and NPU are asked for alone, so that a
         * missing or unsupported one fails instead of silently running on the CPU under its name; the
         * engine then falls back to the CPU and [outcome] says why. LiteRT itself adds the CPU to an
         * NPU request, which [outcome] reports as "NPU with CPU fallback".
         */
        fun create(context: Context, variant: ModelVariant, settings: Settings): ClassifierEngine {
            val meta = readMeta(context, variant)
            if (meta.output.dtype == DType.FLOAT16) {
                // readInt8 returns one byte per element and readFloat reads four: neither fits.
                throw MetaException("float16 outputs cannot be read through LiteRT's Kotlin TensorBuffer: export with a float32 output")
            }
            val labelsTxt = try {
                context.assets.open("labels.txt").bufferedReader().use { it.readText() }
            } catch (e: FileNotFoundException) {
                null
            }
            val labels = Labels.resolve(meta, labelsTxt)
            val t0 = SystemClock.elapsedRealtimeNanos()
            fun ms() = (SystemClock.elapsedRealtimeNanos() - t0) / 1e6
            val asked = settings.accelerator
            val cpuOptions = CompiledModel.Options(Accelerator.CPU).apply {
                cpuOptions = CompiledModel.CpuOptions(numThreads = settings.threads)
            }
            fun onCpu(reason: String?): ClassifierEngine {
                val m = CompiledModel.create(context.assets, variant.modelAsset, cpuOptions)
                val outcome = if (reason == null) AcceleratorOutcome.compiled(asked, settings.threads) else AcceleratorOutcome.fallback(asked, settings.threads, reason)
                return ClassifierEngine(variant, meta, labels, m, null, outcome, ms())
            }
            return when (asked) {
                AcceleratorChoice.CPU -> onCpu(null)
                AcceleratorChoice.GPU -> try {
                    val m = CompiledModel.create(context.assets, variant.modelAsset, CompiledModel.Options(Accelerator.GPU))
                    ClassifierEngine(variant, meta, labels, m, null, AcceleratorOutcome.compiled(asked, settings.threads), ms())
                } catch (e: LiteRtException) {
                    onCpu(e.message ?: "LiteRT error")
                }
                AcceleratorChoice.NPU -> {
                    // The NPU needs the SoC vendor's dispatch library in the APK; LiteRT lists the
                    // accelerators its environment could load.
                    val env = try {
                        Environment.create(context, BuiltinNpuAcceleratorProvider(context))
                    } catch (e: LiteRtException) {
                        return onCpu("no LiteRT NPU environment (${e.message})")
                    }
                    val offered = try {
                        Accelerator.NPU in env.getAvailableAccelerators()
                    } catch (e: LiteRtException) {
                        false
                    }
                    if (!offered) {
                        env.close()
                        return onCpu("LiteRT offers no NPU on this device (SoC ${socModel() ?: "unknown"})")
                    }
                    try {
                        // LiteRT compiles this with the CPU added; the CPU part uses the chosen threads.
                        val npuOptions = CompiledModel.Options(Accelerator.NPU).apply { cpuOptions = CompiledModel.CpuOptions(numThreads = settings.threads) }
                        val m = CompiledModel.create(context.assets, variant.modelAsset, npuOptions, env)
                        ClassifierEngine(variant, meta, labels, m, env, AcceleratorOutcome.compiled(asked, settings.threads), ms())
                    } catch (e: LiteRtException) {
                        env.close()
                        onCpu(e.message ?: "LiteRT error")
                    }
                }
            }
        }
    }
}
