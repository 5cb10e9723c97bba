package org.mvit.core

/**
 * Warm-run latency statistics, defined as `mvit-bench` defines them for its PC rows: `runs` timed
 * inferences after `warmup` untimed ones; median and p90 interpolate linearly between the sorted
 * samples (numpy's default percentile).
 */
data class LatencyStats(val runs: Int, val warmup: Int, val medianMs: Double, val p90Ms: Double, val minMs: Double, val meanMs: Double) {
    companion object {
        /** Statistics of [samplesMs] (at least one sample; the array is not modified). */
        fun of(samplesMs: DoubleArray, warmup: Int): LatencyStats {
            require(samplesMs.isNotEmpty()) { "no timed runs" }
            require(warmup >= 0) { "warmup must be >= 0, got $warmup" }
            val s = samplesMs.copyOf()
            s.sort()
            return LatencyStats(s.size, warmup, percentile(s, 50.0), percentile(s, 90.0), s[0], s.average())
        }

        /** Linear-interpolation percentile of sorted values (numpy `percentile(..., method="linear")`). */
        fun percentile(sorted: DoubleArray, q: Double): Double {
            require(sorted.isNotEmpty() && q in 0.0..100.0) { "percentile $q of ${sorted.size} values" }
            val pos = q / 100.0 * (sorted.size - 1)
            val lo = pos.toInt()
            val hi = minOf(lo + 1, sorted.size - 1)
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
        }
    }
}

/** The first inference (cold) and the warm-run statistics of one benchmark. */
data class Measurement(val firstMs: Double, val latency: LatencyStats)

/** Times an inference the way the apps' benchmark mode does; the clock is injected so tests control it. */
object Benchmark {
    /**
     * Calls [inference] `max(warmup, 1) + runs` times: the first call is timed as the first inference,
     * the other warm-up calls are untimed, then `runs` calls are timed one by one with [clockNanos]
     * (a monotonic clock, e.g. `SystemClock.elapsedRealtimeNanos`). Only [inference] is timed:
     * prepare its input before calling this.
     */
    fun measure(warmup: Int, runs: Int, clockNanos: () -> Long, inference: () -> Unit): Measurement {
        require(warmup in 0..MAX_RUNS) { "warmup must be in 0..$MAX_RUNS, got $warmup" }
        require(runs in 1..MAX_RUNS) { "runs must be in 1..$MAX_RUNS, got $runs" }
        val t0 = clockNanos()
        inference()
        val firstMs = (clockNanos() - t0) / 1e6
        for (i in 1 until warmup) inference()
        val samples = DoubleArray(runs)
        for (i in 0 until runs) {
            val a = clockNanos()
            inference()
            samples[i] = (clockNanos() - a) / 1e6
        }
        return Measurement(firstMs, LatencyStats.of(samples, maxOf(warmup, 1)))
    }

    const val MAX_RUNS = 10_000
}
