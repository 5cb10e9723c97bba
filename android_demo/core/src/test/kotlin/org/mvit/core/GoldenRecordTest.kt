package org.mvit.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** The benchmark's golden check, against the real record of the installed models (shipped_models.json). */
class GoldenRecordTest {
    private val text = Golden.text("shipped_models.json")
    private val image = "checker_300x200.png"
    private fun sha(artifactEnd: String) = Golden.objs(Golden.shipped, "models").single { (it["artifact"] as String).endsWith(artifactEnd) }["artifact_sha256"] as String

    @Test
    fun aStableRecordIsCheckedInFull() {
        val r = GoldenRecord.find(text, sha("assets/model.tflite"), image)
        assertEquals(listOf("metal", "cardboard", "trash"), r.expected)
        assertEquals(3, r.checked)
        assertTrue(r.check(listOf("metal", "cardboard", "trash")).passed)
        assertFalse("order matters", r.check(listOf("metal", "trash", "cardboard")).passed)
        assertFalse(r.check(listOf("metal", "cardboard")).passed)
    }

    @Test
    fun anUnstableRecordStopsBeforeItsNearTie() {
        // int8: the recorded 3rd and 4th probabilities are 0.093 and 0.088 (closer than TIE_MARGIN).
        val r = GoldenRecord.find(text, sha("assets/model_int8.tflite"), image)
        assertEquals(listOf("metal", "paper", "trash"), r.expected)
        assertEquals(2, r.checked)
        val c = r.check(listOf("metal", "paper", "glass"))
        assertTrue(c.passed)
        assertEquals(mapOf("expected" to listOf("metal", "paper", "trash"), "checked" to 2, "passed" to true), c.toMap())
        assertFalse(r.check(listOf("paper", "metal", "trash")).passed)
    }

    @Test
    fun unrecordedArtifactsAndImagesAreRefused() {
        assertThrowsIae { GoldenRecord.find(text, "0".repeat(64), image) }
        assertThrowsIae { GoldenRecord.find(text, sha("assets/model.tflite"), "nope.png") }
        assertThrowsIae { GoldenRecord.find("{", sha("assets/model.tflite"), image) }
        assertThrowsIae { GoldenRecord(listOf("a"), 2) }
    }
}
