package org.mvit.core

/**
 * How a benchmark survives a phone that heats up: every configuration gets [runs] timed inferences,
 * spread over [rounds] rounds; within a round the configurations take turns (the order rotates from
 * round to round, so none is always first or last), with a [cooldownMs] pause between turns. The
 * first turn of a configuration begins with its first (cold) inference and `max(warmup, 1) - 1`
 * untimed ones; later turns begin with [rewarm] untimed inferences, because the other
 * configurations ran in between.
 */
data class RoundPlan(val rounds: Int, val runs: Int, val warmup: Int, val cooldownMs: Long, val rewarm: Int = 2) {
    init {
        require(rounds >= 1) { "rounds must be >= 1, got $rounds" }
        require(runs in rounds..Benchmark.MAX_RUNS) { "runs must be in $rounds..${Benchmark.MAX_RUNS} (at least one per round), got $runs" }
        require(warmup in 0..Benchmark.MAX_RUNS && rewarm >= 0) { "warmup and rewarm must be >= 0" }
        require(cooldownMs >= 0) { "cooldownMs must be >= 0, got $cooldownMs" }
    }

    /** Timed runs in [round] (0-based): [runs] split as evenly as possible, earlier rounds first. */
    fun runsIn(round: Int): Int {
        require(round in 0 until rounds) { "round $round is not in 0 until $rounds" }
        return runs / rounds + if (round < runs % rounds) 1 else 0
    }

    /** The order in which [configs] configurations take their turns in [round]: rotated by the round. */
    fun order(round: Int, configs: Int): List<Int> {
        require(configs >= 1) { "no configurations" }
        return List(configs) { (it + round) % configs }
    }
}

/** One configuration's result over all rounds. */
data class RoundsResult(
    val firstMs: Double,
    val latency: LatencyStats,
    val rounds: Int,
    /** Thermal level before its first turn and after its last; null without a thermal sensor. */
    val thermalBefore: Int?,
    val thermalAfter: Int?,
    /** Whether any of its turns began or ended at a throttling level; null without a thermal sensor. */
    val throttled: Boolean?,
) {
    /** [thermalBefore] and [thermalAfter] named on [scale]. */
    fun thermalNames(scale: ThermalScale): Pair<String?, String?> = thermalBefore?.let(scale::name) to thermalAfter?.let(scale::name)
}

/** Runs a [RoundPlan]; the clock, thermal sensor and pause are injected so tests control them. */
object InterleavedBenchmark {
    /**
     * Times `inference(config)` for each of [configs] configurations, interleaved as [plan] says.
     * [thermal] returns the current level on [scale] (null: the platform has no thermal status, e.g.
     * Android before API 29); [pause] sleeps for the given milliseconds
     * (between turns only); [turn] is told `(config, round)` before each turn (progress).
     * Returns one result per configuration, in the order of [configs].
     */
    fun run(
        configs: Int,
        plan: RoundPlan,
        scale: ThermalScale,
        clockNanos: () -> Long,
        thermal: (() -> Int)?,
        pause: (Long) -> Unit,
        turn: (Int, Int) -> Unit = { _, _ -> },
        inference: (Int) -> Unit,
    ): List<RoundsResult> {
        require(configs >= 1) { "no configurations" }
        val samples = List(configs) { DoubleArray(plan.runs) }
        val filled = IntArray(configs)
        val first = DoubleArray(configs)
        val readings = List(configs) { ArrayList<ThermalReading>() }
        var turns = 0
        for (round in 0 until plan.rounds) {
            for (c in plan.order(round, configs)) {
                if (turns++ > 0 && plan.cooldownMs > 0) pause(plan.cooldownMs)
                turn(c, round)
                val before = thermal?.invoke()
                if (round == 0) {
                    val t0 = clockNanos()
                    inference(c)
                    first[c] = (clockNanos() - t0) / 1e6
                    repeat(maxOf(plan.warmup, 1) - 1) { inference(c) }
                } else {
                    repeat(plan.rewarm) { inference(c) }
                }
                repeat(plan.runsIn(round)) {
                    val a = clockNanos()
                    inference(c)
                    samples[c][filled[c]++] = (clockNanos() - a) / 1e6
                }
                if (before != null) readings[c] += ThermalReading(before, thermal.invoke())
            }
        }
        return List(configs) { c ->
            val r = readings[c]
            RoundsResult(first[c], LatencyStats.of(samples[c], maxOf(plan.warmup, 1)), plan.rounds, r.firstOrNull()?.before, r.lastOrNull()?.after,
                if (r.isEmpty()) null else r.any { scale.throttles(it.before) || scale.throttles(it.after) })
        }
    }
}
