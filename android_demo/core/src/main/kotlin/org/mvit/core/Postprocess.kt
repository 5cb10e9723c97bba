package org.mvit.core

import kotlin.math.exp

data class Classification(val index: Int, val label: String, val score: Double)

/** Model output -> class scores -> top-k. */
object Postprocess {
    /** `real = (q - zero_point) * scale` in float32; bytes are read as int8 or uint8 per [dtype]. */
    fun dequantize(values: ByteArray, dtype: DType, q: QuantParams): FloatArray {
        val s = q.scale.toFloat()
        val z = q.zeroPoint.toFloat()
        return FloatArray(values.size) {
            val v = if (dtype == DType.UINT8) values[it].toInt() and 0xFF else values[it].toInt()
            (v.toFloat() - z) * s
        }
    }

    /** Numerically stable softmax in double precision. */
    fun softmax(x: FloatArray): DoubleArray {
        if (x.isEmpty()) return DoubleArray(0)
        var m = Double.NEGATIVE_INFINITY
        for (v in x) if (v > m) m = v.toDouble()
        val e = DoubleArray(x.size) { exp(x[it] - m) }
        val sum = e.sum()
        for (i in e.indices) e[i] /= sum
        return e
    }

    /** Probabilities from the model's (dequantised) output, per `output.kind`. */
    fun scores(output: FloatArray, kind: OutputKind): DoubleArray =
        if (kind == OutputKind.LOGITS) softmax(output) else DoubleArray(output.size) { output[it].toDouble() }

    /** Indices of the k largest scores, descending; ties go to the lower index. */
    fun topK(scores: DoubleArray, k: Int): IntArray {
        val n = minOf(k, scores.size)
        val chosen = BooleanArray(scores.size)
        val out = IntArray(n)
        for (r in 0 until n) {
            var best = -1
            for (i in scores.indices) {
                if (chosen[i]) continue
                if (best < 0 || scores[i] > scores[best]) best = i
            }
            chosen[best] = true
            out[r] = best
        }
        return out
    }

    fun classify(output: FloatArray, kind: OutputKind, labels: List<String>, k: Int = 3): List<Classification> {
        require(output.size == labels.size) { "model returned ${output.size} scores for ${labels.size} labels" }
        val s = scores(output, kind)
        return topK(s, k).map { Classification(it, labels[it], s[it]) }
    }

    /** Float view of a raw output for [spec] (float arrays pass through, int8/uint8 are dequantised). */
    fun decode(spec: OutputSpec, floats: FloatArray?, bytes: ByteArray?): FloatArray = when (spec.dtype) {
        DType.FLOAT32, DType.FLOAT16 -> floats ?: throw IllegalArgumentException("float output expected")
        DType.INT8, DType.UINT8 -> dequantize(bytes ?: throw IllegalArgumentException("byte output expected"), spec.dtype, spec.quantization!!)
    }
}

/** Rolling average over the last [window] values (latency in milliseconds). */
class RollingAverage(val window: Int = 30) {
    private val values = DoubleArray(window)
    private var next = 0
    var count = 0
        private set
    private var sum = 0.0
    var last = Double.NaN
        private set

    init {
        require(window > 0) { "window must be positive" }
    }

    fun add(v: Double) {
        if (count == window) sum -= values[next] else count++
        values[next] = v
        sum += v
        next = (next + 1) % window
        last = v
    }

    val average: Double get() = if (count == 0) Double.NaN else sum / count

    fun reset() {
        next = 0; count = 0; sum = 0.0; last = Double.NaN
    }
}

/** Per-frame timings and frames per second over a rolling window of frame end times. */
class FrameStats(window: Int = 30) {
    val preprocessMs = RollingAverage(window)
    val inferenceMs = RollingAverage(window)
    val totalMs = RollingAverage(window)
    private val stamps = LongArray(window)
    private var n = 0
    private var next = 0

    /** Record one frame; [endNanos] is a monotonic clock reading taken when the frame finished. */
    fun record(preMs: Double, inferMs: Double, totalMs: Double, endNanos: Long) {
        preprocessMs.add(preMs)
        inferenceMs.add(inferMs)
        this.totalMs.add(totalMs)
        stamps[next] = endNanos
        next = (next + 1) % stamps.size
        if (n < stamps.size) n++
    }

    /** Frames per second over the window (0 until two frames were seen). */
    val fps: Double
        get() {
            if (n < 2) return 0.0
            val newest = stamps[(next - 1 + stamps.size) % stamps.size]
            val oldest = stamps[if (n < stamps.size) 0 else next]
            val dt = (newest - oldest) / 1e9
            return if (dt <= 0) 0.0 else (n - 1) / dt
        }

    fun reset() {
        preprocessMs.reset(); inferenceMs.reset(); totalMs.reset(); n = 0; next = 0
    }
}
