package org.mvit.core

/**
 * The benchmark's check that the timed model still answers as recorded: the top-3 that
 * `python -m mvit.export.apps.fixtures --shipped` recorded for the installed artifact (by sha256) on the
 * benchmark's golden image, from `shipped_models.json` (shipped in the app as [ASSET]).
 */
data class GoldenRecord(val expected: List<String>, val checked: Int) {
    init {
        require(expected.size in 1..3 && checked in 1..expected.size) { "1 to 3 expected labels, 1 to ${expected.size} of them checked" }
    }

    /** Checks [got] (the row's top-3 labels) against the leading [checked] expected labels. */
    fun check(got: List<String>): GoldenCheck = GoldenCheck(expected, checked, got.take(checked) == expected.take(checked))

    companion object {
        const val ASSET = "shipped_models.json"

        /**
         * Adjacent recorded probabilities closer than this may swap on another runtime (GPU float16,
         * another CPU's rounding): the check stops before such a pair.
         */
        const val TIE_MARGIN = 0.01

        /**
         * The record of the artifact with [artifactSha256] on [image], from the text of
         * `shipped_models.json`. A record marked `stable_top3` is checked in full; otherwise only
         * the labels before the first near-tie of the recorded scores. Throws [MetaException] when
         * nothing is recorded for them.
         */
        fun find(shippedJson: String, artifactSha256: String, image: String): GoldenRecord {
            val doc = try {
                Json.parseObject(shippedJson)
            } catch (e: Json.ParseException) {
                throw MetaException("$ASSET is not valid JSON: ${e.message}")
            }
            @Suppress("UNCHECKED_CAST")
            val models = doc["models"] as? List<Map<String, Any?>> ?: throw MetaException("$ASSET has no models")
            val model = models.firstOrNull { it["artifact_sha256"] == artifactSha256 }
                ?: throw MetaException("$ASSET records no artifact with sha256 $artifactSha256: run `python -m mvit.export.apps.fixtures --shipped`")
            @Suppress("UNCHECKED_CAST")
            val case = (model["cases"] as? List<Map<String, Any?>>)?.firstOrNull { it["image"] == image }
                ?: throw MetaException("$ASSET records no case of ${model["artifact"]} on $image")
            @Suppress("UNCHECKED_CAST")
            val labels = (case["top3"] as? List<Map<String, Any?>>)?.map { it.str("label") }
                ?: throw MetaException("$ASSET: the case on $image has no top3")
            val scores = case.numList("scores").sortedDescending()
            val stable = case.bool("stable_top3", false)
            val settled = if (stable) labels.size else (0 until labels.size).firstOrNull { i ->
                i + 1 < scores.size && scores[i] - scores[i + 1] < TIE_MARGIN
            } ?: labels.size
            if (settled == 0) throw MetaException("$ASSET: the recorded top-1 on $image is a near-tie; nothing can be checked")
            return GoldenRecord(labels, settled)
        }
    }
}

/** The result of [GoldenRecord.check]: the benchmark JSON's `golden` object. */
data class GoldenCheck(val expected: List<String>, val checked: Int, val passed: Boolean) {
    /** `{"expected": [...], "checked": N, "passed": bool}`. */
    fun toMap(): Map<String, Any?> = linkedMapOf("expected" to expected, "checked" to checked, "passed" to passed)
}
