package org.mvit.core

/** The installed artifacts the app can run: the asset names `mvit.export.apps.slots` installs them under. */
enum class ModelVariant(val modelAsset: String, val metaAsset: String, val title: String) {
    FLOAT("model.tflite", "model_meta.json", "float"),
    INT8("model_int8.tflite", "model_int8_meta.json", "int8"),
}

/** What the user asks LiteRT for; [id] is the `accelerator` vocabulary of docs/device_results.md. */
enum class AcceleratorChoice(val id: String, val title: String) {
    CPU("cpu", "CPU"),
    GPU("gpu", "GPU"),
    NPU("npu", "NPU"),
}

/** The app's settings; survives rotation in the ViewModel. Threads apply to the CPU (XNNPACK). */
data class Settings(
    val variant: ModelVariant = ModelVariant.FLOAT,
    val accelerator: AcceleratorChoice = AcceleratorChoice.CPU,
    val threads: Int = DEFAULT_THREADS,
) {
    init {
        require(threads in 1..MAX_THREADS) { "threads must be in 1..$MAX_THREADS, got $threads" }
    }

    companion object {
        const val DEFAULT_THREADS = 4
        const val MAX_THREADS = 8
    }
}

/** Whether two models (fp32 and int8) agree on one input: same top-1, and how many of the top-3 they share. */
data class Agreement(val top1Agrees: Boolean, val sharedTop3: Int) {
    companion object {
        fun of(a: List<Classification>, b: List<Classification>): Agreement {
            require(a.isNotEmpty() && b.isNotEmpty()) { "both models need a top-3" }
            val shared = a.take(3).map { it.index }.toSet().intersect(b.take(3).map { it.index }.toSet()).size
            return Agreement(a[0].index == b[0].index, shared)
        }
    }
}

/** Photo decoding: how much the platform decoder may subsample before the contract's resize. */
object PhotoSizing {
    /**
     * The largest power-of-two subsampling that keeps the short side of a `width x height` photo at
     * least `2 * resizeShort` (twice what the contract resizes to, so the exact resize still
     * averages several decoded pixels per output pixel); 1 for photos that are already small.
     */
    fun sampleSize(width: Int, height: Int, resizeShort: Int): Int {
        require(width > 0 && height > 0 && resizeShort > 0) { "sizes must be positive" }
        val short = minOf(width, height)
        var s = 1
        while (short / (s * 2) >= 2 * resizeShort) s *= 2
        return s
    }
}
