package org.mvit.core

import java.io.File
import java.io.InputStream
import java.security.MessageDigest
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone

/** The phone that measured (docs/device_results.md `device`); Android fills it from `android.os.Build`. */
data class DeviceInfo(
    val manufacturer: String,
    val model: String,
    val soc: String?,
    val os: String,
    val osVersion: String,
    val abi: String?,
) {
    fun toMap(): Map<String, Any?> = linkedMapOf(
        "manufacturer" to manufacturer, "model" to model, "soc" to soc, "os" to os, "os_version" to osVersion, "abi" to abi,
    )
}

/** One latency row: one artifact on one accelerator (docs/device_results.md `rows[]`). */
data class BenchmarkRow(
    val model: String,
    val artifact: String,
    val artifactSha256: String?,
    val format: String,
    val precision: String,
    val accelerator: String,
    val acceleratorUsed: String,
    val threads: Int?,
    val latency: LatencyStats,
    val loadMs: Double?,
    val firstMs: Double?,
    val top3: List<Classification>?,
    val note: String = "",
    /** Rounds the timed runs were spread over ([RoundPlan]); null for a single pass. */
    val rounds: Int? = null,
    /** Thermal level names before the row's first turn and after its last ([ThermalScale]). */
    val thermalBefore: String? = null,
    val thermalAfter: String? = null,
    /** Whether the phone was at a throttling level during any of the row's turns. */
    val throttled: Boolean? = null,
    /** The top-3 checked against the golden record; a failed check marks the row failed. */
    val golden: GoldenCheck? = null,
) {
    /** False when the model no longer gives the recorded top-3 on the golden image. */
    val failed: Boolean get() = golden?.passed == false

    /** The row as schema `mvit.device_results/1` writes it. */
    fun toMap(): Map<String, Any?> = linkedMapOf(
        "model" to model, "artifact" to artifact, "artifact_sha256" to artifactSha256, "format" to format,
        "precision" to precision, "accelerator" to accelerator, "accelerator_used" to acceleratorUsed, "threads" to threads,
        "latency" to linkedMapOf(
            "runs" to latency.runs, "warmup" to latency.warmup, "median_ms" to latency.medianMs,
            "p90_ms" to latency.p90Ms, "min_ms" to latency.minMs, "mean_ms" to latency.meanMs,
        ),
        "load_ms" to loadMs, "first_ms" to firstMs,
        "top3" to top3?.map { linkedMapOf("label" to it.label, "score" to it.score) },
        "note" to note, "rounds" to rounds, "thermal_before" to thermalBefore, "thermal_after" to thermalAfter,
        "throttled" to throttled, "golden" to golden?.toMap(),
    )
}

/**
 * A benchmark run of the app, written as schema `mvit.device_results/1` (docs/device_results.md),
 * the file `mvit-bench --device-results` reads. [writeTo] refuses a report that breaks the schema's
 * rules and writes atomically (temporary file, then rename).
 */
data class BenchmarkReport(val created: String, val source: String, val device: DeviceInfo, val rows: List<BenchmarkRow>) {
    fun toMap(): Map<String, Any?> = linkedMapOf(
        "schema" to SCHEMA, "created" to created, "source" to source, "device" to device.toMap(), "rows" to rows.map { it.toMap() },
    )

    fun toJson(): String {
        val doc = toMap()
        val problems = problems(doc)
        require(problems.isEmpty()) { "benchmark report breaks ${SCHEMA}: ${problems.joinToString("; ")}" }
        return JsonWriter.write(doc)
    }

    /** Write the JSON to [file] through a temporary file beside it; returns [file]. */
    fun writeTo(file: File): File {
        val text = toJson()
        val dir = file.absoluteFile.parentFile ?: throw IllegalArgumentException("$file has no folder")
        val tmp = File.createTempFile(".${file.name}.", ".tmp", dir)
        try {
            tmp.writeText(text, Charsets.UTF_8)
            if (!tmp.renameTo(file)) throw java.io.IOException("cannot rename $tmp to $file")
        } finally {
            if (tmp.exists()) tmp.delete()
        }
        return file
    }

    companion object {
        const val SCHEMA = "mvit.device_results/1"
        val SOURCES = setOf("android-app", "ios-app", "adb:benchmark_model", "adb:executor_runner")
        val FORMATS = setOf("tflite", "coreml", "onnx", "executorch")
        val PRECISIONS = setOf("fp32", "fp16", "dynamic", "int8")
        val ACCELERATORS = setOf("cpu", "gpu", "npu", "npu+cpu", "cpu_only", "cpu_and_gpu", "cpu_and_ne", "all", "unknown")
        private val SHA256 = Regex("[0-9a-f]{64}")
        private val ISO_UTC = Regex("\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?Z")

        /** ISO-8601 UTC time of [epochMillis], e.g. `2026-12-01T12:00:00Z` (no java.time: minSdk 24). */
        fun isoUtc(epochMillis: Long): String =
            SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss'Z'", Locale.US).apply { timeZone = TimeZone.getTimeZone("UTC") }.format(Date(epochMillis))

        /** Every way [doc] (a parsed JSON document) breaks the rules of docs/device_results.md; empty when valid. */
        fun problems(doc: Any?): List<String> {
            val p = ArrayList<String>()
            val m = doc as? Map<*, *> ?: return listOf("the document is not a JSON object")
            if (m["schema"] != SCHEMA) p += "schema must be '$SCHEMA', got ${m["schema"]}"
            val created = m["created"]
            if (created !is String || !ISO_UTC.matches(created)) p += "created must be an ISO-8601 UTC time, got $created"
            if (m["source"] !in SOURCES) p += "source must be one of ${SOURCES.sorted()}, got ${m["source"]}"
            val device = m["device"] as? Map<*, *>
            if (device == null) {
                p += "device must be an object"
            } else {
                for (k in listOf("manufacturer", "model", "os", "os_version")) {
                    if ((device[k] as? String).isNullOrEmpty()) p += "device.$k must be a non-empty string"
                }
                for (k in listOf("soc", "abi")) if (!device.containsKey(k) || (device[k] != null && device[k] !is String)) p += "device.$k must be a string or null"
            }
            val rows = m["rows"] as? List<*>
            if (rows.isNullOrEmpty()) p += "rows must be a non-empty list"
            rows?.forEachIndexed { i, r -> rowProblems(r, "rows[$i]", p) }
            return p
        }

        private fun rowProblems(r: Any?, at: String, p: MutableList<String>) {
            val row = r as? Map<*, *> ?: return run { p += "$at must be an object" }
            for (k in listOf("model", "artifact")) if ((row[k] as? String).isNullOrEmpty()) p += "$at.$k must be a non-empty string"
            val sha = row["artifact_sha256"]
            if (!row.containsKey("artifact_sha256") || (sha != null && (sha !is String || !SHA256.matches(sha)))) {
                p += "$at.artifact_sha256 must be 64 lower-case hex digits or null"
            }
            if (row["format"] !in FORMATS) p += "$at.format must be one of ${FORMATS.sorted()}, got ${row["format"]}"
            if (row["precision"] !in PRECISIONS) p += "$at.precision must be one of ${PRECISIONS.sorted()}, got ${row["precision"]}"
            for (k in listOf("accelerator", "accelerator_used")) if (row[k] !in ACCELERATORS) p += "$at.$k must be one of ${ACCELERATORS.sorted()}, got ${row[k]}"
            val threads = row["threads"]
            if (!row.containsKey("threads") || (threads != null && !(isInt(threads) && (threads as Number).toLong() > 0))) p += "$at.threads must be a positive integer or null"
            latencyProblems(row["latency"], "$at.latency", p)
            for (k in listOf("load_ms", "first_ms")) {
                val v = row[k]
                if (!row.containsKey(k) || (v != null && !(v is Number && v.toDouble().isFinite() && v.toDouble() >= 0))) p += "$at.$k must be a number >= 0 or null"
            }
            val top3 = row["top3"]
            if (!row.containsKey("top3")) p += "$at.top3 must be a list or null"
            if (top3 != null) {
                val l = top3 as? List<*>
                if (l == null || l.isEmpty() || l.size > 3 || l.any { e ->
                        val o = e as? Map<*, *>
                        o == null || (o["label"] as? String).isNullOrEmpty() || (o["score"] as? Number)?.toDouble()?.isFinite() != true
                    }) p += "$at.top3 must hold 1 to 3 {label, score} objects"
            }
            if (row["note"] !is String) p += "$at.note must be a string"
            checkProblems(row, at, p)
        }

        /** The optional fields of a benchmark that survives a phone: rounds, thermal state, golden check. */
        private fun checkProblems(row: Map<*, *>, at: String, p: MutableList<String>) {
            val rounds = row["rounds"]
            if (rounds != null && !(isInt(rounds) && (rounds as Number).toLong() >= 1)) p += "$at.rounds must be an integer >= 1 or null"
            for (k in listOf("thermal_before", "thermal_after")) {
                val v = row[k]
                if (v != null && (v !is String || v.isEmpty())) p += "$at.$k must be a non-empty string or null"
            }
            if (row["throttled"] != null && row["throttled"] !is Boolean) p += "$at.throttled must be true, false or null"
            val g = row["golden"] ?: return
            val expected = (g as? Map<*, *>)?.get("expected") as? List<*>
            val checked = (g as? Map<*, *>)?.get("checked")
            if (expected == null || expected.size !in 1..3 || expected.any { (it as? String).isNullOrEmpty() } ||
                !isInt(checked) || (checked as Number).toInt() !in 1..expected.size || g["passed"] !is Boolean
            ) p += "$at.golden must be {expected: 1 to 3 labels, checked: 1 to that many, passed: bool} or null"
        }

        private fun latencyProblems(v: Any?, at: String, p: MutableList<String>) {
            val l = v as? Map<*, *> ?: return run { p += "$at must be an object" }
            if (!isInt(l["runs"]) || (l["runs"] as Number).toLong() < 1) p += "$at.runs must be an integer >= 1"
            if (!isInt(l["warmup"]) || (l["warmup"] as Number).toLong() < 0) p += "$at.warmup must be an integer >= 0"
            val keys = listOf("median_ms", "p90_ms", "min_ms", "mean_ms")
            val values = keys.map { (l[it] as? Number)?.toDouble() }
            keys.zip(values).forEach { (k, x) -> if (x == null || !x.isFinite() || x <= 0) p += "$at.$k must be a number > 0" }
            val (median, p90, min) = values
            if (median != null && p90 != null && min != null && !(min <= median && median <= p90)) {
                p += "$at must have min_ms <= median_ms <= p90_ms, got $min, $median, $p90"
            }
        }

        private fun isInt(v: Any?): Boolean = v is Int || v is Long
    }
}

/** Lower-case hex sha256 of everything [input] holds (`artifact_sha256` of a `.tflite`); closes nothing. */
fun sha256Hex(input: InputStream): String {
    val md = MessageDigest.getInstance("SHA-256")
    val buf = ByteArray(1 shl 16)
    while (true) {
        val n = input.read(buf)
        if (n < 0) break
        md.update(buf, 0, n)
    }
    return md.digest().joinToString("") { "%02x".format(it) }
}
