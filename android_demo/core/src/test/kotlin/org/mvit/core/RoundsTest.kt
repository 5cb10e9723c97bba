package org.mvit.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** Interleaved rounds with a cool-down, thermal marking, and the golden record check. */
class RoundsTest {
    @Test
    fun runsAreSplitEvenlyAndTheOrderRotates() {
        val p = RoundPlan(rounds = 3, runs = 50, warmup = 10, cooldownMs = 5_000)
        assertEquals(listOf(17, 17, 16), (0 until 3).map { p.runsIn(it) })
        assertEquals(listOf(listOf(0, 1, 2, 3), listOf(1, 2, 3, 0), listOf(2, 3, 0, 1)), (0 until 3).map { p.order(it, 4) })
        assertThrowsIae { RoundPlan(rounds = 5, runs = 4, warmup = 1, cooldownMs = 0) }
        assertThrowsIae { RoundPlan(rounds = 0, runs = 4, warmup = 1, cooldownMs = 0) }
        assertThrowsIae { p.runsIn(3) }
    }

    /** A fake phone: each inference of config c costs (c + 1) ms plus 1 ms per earlier turn (it heats up). */
    private class Phone(val hotFromTurn: Int) {
        var now = 0L
        var turn = 0
        val log = ArrayList<String>()
        val pauses = ArrayList<Long>()
        fun inference(c: Int) {
            now += (c + 1 + turn) * 1_000_000L
        }
        fun thermal() = if (turn >= hotFromTurn) 2 else 0
    }

    @Test
    fun configurationsTakeTurnsWithACoolDownAndEachGetsAllItsRuns() {
        val phone = Phone(hotFromTurn = 5)
        val plan = RoundPlan(rounds = 3, runs = 6, warmup = 3, cooldownMs = 2_000, rewarm = 1)
        val calls = IntArray(2)
        val results = InterleavedBenchmark.run(
            configs = 2, plan = plan, scale = ThermalScale.ANDROID, clockNanos = { phone.now }, thermal = { phone.thermal() },
            pause = { phone.pauses += it }, turn = { c, r -> phone.log += "r$r:c$c"; phone.turn++ },
        ) { c -> calls[c]++; phone.inference(c) }
        assertEquals(listOf("r0:c0", "r0:c1", "r1:c1", "r1:c0", "r2:c0", "r2:c1"), phone.log)
        assertEquals("a pause between turns, none before the first", List(5) { 2_000L }, phone.pauses)
        // 1 first + 2 more warm-up + 6 timed + 1 re-warm in each of the 2 later rounds
        assertEquals(listOf(11, 11), calls.toList())
        val (c0, c1) = results
        assertEquals(6, c0.latency.runs)
        assertEquals(3, c0.rounds)
        assertEquals(2.0, c0.firstMs, 1e-9) // config 0 in turn 1: 1 + 1 ms
        assertEquals(4.0, c1.firstMs, 1e-9) // config 1 in turn 2: 2 + 2 ms
        // config 0 timed in turns 1, 4, 5 (2 runs each): 2, 2, 5, 5, 6, 6 ms
        assertEquals(listOf(2.0, 5.0, 6.0), listOf(c0.latency.minMs, c0.latency.medianMs, c0.latency.p90Ms))
        assertEquals("none" to "moderate", c0.thermalNames(ThermalScale.ANDROID))
        assertEquals(listOf(true, true), results.map { it.throttled })
    }

    @Test
    fun aCoolPhoneIsNotMarkedThrottled() {
        val phone = Phone(hotFromTurn = 100)
        val r = InterleavedBenchmark.run(2, RoundPlan(2, 4, 1, 0), ThermalScale.ANDROID, { phone.now }, { phone.thermal() },
            { throw AssertionError("no pause without a cool-down") }, { _, _ -> phone.turn++ }) { phone.inference(it) }
        assertEquals(listOf(false, false), r.map { it.throttled })
        assertEquals(listOf(0, 0), r.map { it.thermalAfter })
    }

    @Test
    fun withoutAThermalSensorTheStateIsUnknownNotCool() {
        val phone = Phone(hotFromTurn = 0)
        val r = InterleavedBenchmark.run(1, RoundPlan(2, 2, 1, 0), ThermalScale.ANDROID, { phone.now }, null, {}) { phone.inference(it) }
        assertEquals(listOf(null, null, null), listOf(r[0].thermalBefore, r[0].thermalAfter, r[0].throttled))
        assertEquals(null to null, r[0].thermalNames(ThermalScale.ANDROID))
        assertEquals(2, r[0].latency.runs)
    }

    @Test
    fun thermalLevelsHaveNamesAndAThreshold() {
        assertEquals("none", ThermalScale.ANDROID.name(0))
        assertFalse(ThermalScale.ANDROID.throttles(0))
        assertTrue(ThermalScale.ANDROID.throttles(1))
        assertThrowsIae { ThermalScale.ANDROID.name(7) }
        assertThrowsIae { ThermalScale(listOf("a"), 1) }
    }
}
