package org.mvit.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.nio.file.Files

/**
 * The benchmark mode's JSON (docs/device_results.md): statistics, timing, and a report written the
 * way the app writes it, parsed back and checked against the schema's rules. With
 * `-Dmvit.deviceResultsOut=FILE` (ci/test_core.sh: MVIT_DEVICE_RESULTS_OUT) the report is written
 * there, for tests/test_device_results_roundtrip.py to read through `mvit-bench --device-results`.
 */
class BenchmarkReportTest {
    @Test
    fun latencyStatisticsAreNumpysMedianAndLinearP90() {
        val s = LatencyStats.of(doubleArrayOf(5.0, 1.0, 3.0, 2.0, 4.0, 10.0), warmup = 3)
        assertEquals(6, s.runs)
        assertEquals(3, s.warmup)
        assertEquals(3.5, s.medianMs, 1e-12) // numpy.median([1, 2, 3, 4, 5, 10])
        assertEquals(7.5, s.p90Ms, 1e-12) // numpy.percentile(..., 90): 5 + 0.5 * (10 - 5)
        assertEquals(1.0, s.minMs, 0.0)
        assertEquals(25.0 / 6, s.meanMs, 1e-12)
        assertEquals(4.0, LatencyStats.of(doubleArrayOf(4.0), 0).p90Ms, 0.0)
        assertThrows { LatencyStats.of(DoubleArray(0), 0) }
    }

    @Test
    fun measureTimesEachRunAndOnlyTheInference() {
        var now = 0L
        val costsMs = longArrayOf(30, 20, 20, 4, 6, 5, 5, 9)
        var calls = 0
        val m = Benchmark.measure(warmup = 3, runs = 5, clockNanos = { now }) {
            now += costsMs[calls++] * 1_000_000L
        }
        assertEquals(8, calls) // 3 warm-up (the first one timed as first_ms) + 5 timed
        assertEquals(30.0, m.firstMs, 1e-9)
        val l = m.latency // timed: 4, 6, 5, 5, 9
        assertEquals(listOf(5, 3), listOf(l.runs, l.warmup))
        assertEquals(5.0, l.medianMs, 1e-9)
        assertEquals(7.8, l.p90Ms, 1e-9)
        assertEquals(4.0, l.minMs, 1e-9)
        assertEquals(5.8, l.meanMs, 1e-9)
        assertThrows { Benchmark.measure(warmup = 1, runs = 0, clockNanos = { now }) {} }
        assertThrows { Benchmark.measure(warmup = -1, runs = 1, clockNanos = { now }) {} }
    }

    private fun report(): BenchmarkReport {
        var now = 0L
        var step = 0L
        fun run() = Benchmark.measure(warmup = 10, runs = 50, clockNanos = { now }) { step++; now += 8_000_000L + (step % 7) * 250_000L }
        val top = listOf(Classification(4, "plastic", 0.91), Classification(1, "glass", 0.05), Classification(2, "metal", 0.02))
        val fp32 = run()
        val int8 = run()
        val npu = AcceleratorOutcome.fallback(AcceleratorChoice.NPU, 4, "no NPU dispatch library for this SoC")
        val golden = GoldenRecord(listOf("plastic", "glass", "metal"), 3)
        return BenchmarkReport(
            created = BenchmarkReport.isoUtc(1_796_126_400_000L),
            source = "android-app",
            device = DeviceInfo("Google", "Pixel 8", "Tensor G3", "Android", "15", "arm64-v8a"),
            rows = listOf(
                BenchmarkRow("mobilevit_xxs", "model.tflite", "a".repeat(64), "tflite", "fp32", "cpu", "cpu", 4,
                    fp32.latency, 41.0, fp32.firstMs, top, rounds = 5, thermalBefore = "none", thermalAfter = "light", throttled = true,
                    golden = golden.check(top.map { it.label })),
                BenchmarkRow("mobilevit_xxs", "model_int8.tflite", null, "tflite", "int8", npu.asked.id, npu.used.id, npu.threads,
                    int8.latency, null, int8.firstMs, top.take(2), npu.note, rounds = 5, thermalBefore = "light", thermalAfter = "light",
                    throttled = true, golden = golden.check(listOf("glass", "plastic"))),
            ),
        )
    }

    @Test
    fun theWrittenReportFollowsTheDocumentedSchema() {
        val out = System.getProperty("mvit.deviceResultsOut").orEmpty()
        val file = if (out.isNotEmpty()) File(out) else Files.createTempDirectory("mvit-bench").toFile().resolve("device_results.json")
        file.absoluteFile.parentFile.mkdirs()
        val r = report()
        r.writeTo(file)
        assertEquals("no temporary file left beside it", listOf(file.name), file.absoluteFile.parentFile.list()!!.filter { it.contains(file.name) })

        val doc = Json.parseObject(file.readText())
        assertEquals(emptyList<String>(), BenchmarkReport.problems(doc))
        assertEquals("mvit.device_results/1", doc["schema"])
        assertEquals("2026-12-01T12:00:00Z", doc["created"])
        assertEquals(listOf("schema", "created", "source", "device", "rows"), doc.keys.toList())
        val rows = Golden.objs(doc, "rows")
        assertEquals(2, rows.size)
        val lat = Golden.obj(rows[0], "latency")
        assertEquals(50L, lat["runs"])
        assertEquals(10L, lat["warmup"])
        assertEquals(r.rows[0].latency.medianMs, Golden.dbl(lat, "median_ms"), 0.0)
        assertEquals("npu", rows[1]["accelerator"])
        assertEquals("cpu", rows[1]["accelerator_used"])
        assertEquals("npu asked, cpu used: no NPU dispatch library for this SoC", rows[1]["note"])
        assertTrue(rows[1].containsKey("load_ms") && rows[1]["load_ms"] == null && rows[1]["artifact_sha256"] == null)
        assertEquals(listOf("plastic", "glass", "metal"), Golden.objs(rows[0], "top3").map { it["label"] })
        assertEquals(listOf(5L, "none", "light", true), listOf("rounds", "thermal_before", "thermal_after", "throttled").map { rows[0][it] })
        assertEquals(mapOf("expected" to listOf("plastic", "glass", "metal"), "checked" to 3L, "passed" to true), rows[0]["golden"])
        assertEquals(false, Golden.obj(rows[1], "golden")["passed"])
        assertEquals(listOf(false, true), r.rows.map { it.failed })
    }

    @Test
    fun brokenReportsAreNamedAndNeverWritten() {
        val good = report()
        fun problemsOf(r: BenchmarkReport) = BenchmarkReport.problems(r.toMap())
        val row = good.rows[0]
        assertTrue(problemsOf(good.copy(rows = listOf(row.copy(latency = row.latency.copy(medianMs = 99.0))))).single().contains("min_ms <= median_ms <= p90_ms"))
        assertTrue(problemsOf(good.copy(source = "phone")).single().startsWith("source"))
        assertTrue(problemsOf(good.copy(created = "yesterday")).single().startsWith("created"))
        assertTrue(problemsOf(good.copy(rows = emptyList())).single().startsWith("rows"))
        assertTrue(problemsOf(good.copy(rows = listOf(row.copy(acceleratorUsed = "tpu")))).single().contains("accelerator_used"))
        assertTrue(problemsOf(good.copy(rows = listOf(row.copy(artifactSha256 = "ABC")))).single().contains("artifact_sha256"))
        assertTrue(problemsOf(good.copy(rows = listOf(row.copy(threads = 0)))).single().contains("threads"))
        assertTrue(problemsOf(good.copy(device = good.device.copy(model = ""))).single().contains("device.model"))
        assertTrue(problemsOf(good.copy(rows = listOf(row.copy(top3 = emptyList())))).single().contains("top3"))
        assertTrue(problemsOf(good.copy(rows = listOf(row.copy(rounds = 0)))).single().contains("rounds"))
        assertTrue(problemsOf(good.copy(rows = listOf(row.copy(thermalAfter = "")))).single().contains("thermal_after"))
        val badGolden = row.copy(golden = GoldenCheck(listOf("plastic"), 2, true))
        assertTrue(problemsOf(good.copy(rows = listOf(badGolden))).single().contains("golden"))
        val bare = row.copy(rounds = null, thermalBefore = null, thermalAfter = null, throttled = null, golden = null)
        assertEquals("the new fields are optional", emptyList<String>(), problemsOf(good.copy(rows = listOf(bare))))
        val doc = Json.parseObject(JsonWriter.write(good.toMap()))
        assertEquals(emptyList<String>(), BenchmarkReport.problems(doc))
        assertEquals(listOf("the document is not a JSON object"), BenchmarkReport.problems(listOf(1)))

        val dir = Files.createTempDirectory("mvit-bad").toFile()
        val bad = good.copy(rows = listOf(row.copy(firstMs = Double.NaN)))
        assertThrows { bad.writeTo(dir.resolve("r.json")) }
        assertEquals("nothing written, not even a temporary file", 0, dir.list()!!.size)
    }

    @Test
    fun jsonWriterEscapesAndRoundTrips() {
        val v = linkedMapOf("s" to "a \"q\" \\ \n\t\u0001 é", "n" to listOf(1, 2.5, -0.0, 1e-7, null, true), "e" to emptyMap<String, Any>(), "l" to emptyList<Any>())
        val back = Json.parseObject(JsonWriter.write(v))
        assertEquals(v["s"], back["s"])
        assertEquals(listOf(1L, 2.5, -0.0, 1e-7, null, true), back["n"])
        assertEquals(emptyMap<String, Any>(), back["e"])
        assertThrows { JsonWriter.write(mapOf("x" to Double.POSITIVE_INFINITY)) }
        assertThrows { JsonWriter.write(mapOf(1 to 2)) }
    }

    private fun assertThrows(block: () -> Unit) {
        try {
            block()
        } catch (e: IllegalArgumentException) {
            return
        }
        fail("expected IllegalArgumentException")
    }
}
