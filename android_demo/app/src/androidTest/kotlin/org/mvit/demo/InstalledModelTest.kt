package org.mvit.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import org.mvit.core.AcceleratorChoice
import org.mvit.core.AcceleratorOutcome
import org.mvit.core.BenchmarkInput
import org.mvit.core.GoldenRecord
import org.mvit.core.ModelVariant
import org.mvit.core.Postprocess
import org.mvit.core.Settings
import java.nio.ByteBuffer

/**
 * On a device or emulator (`./gradlew :app:connectedAndroidTest`): both installed variants load on
 * every accelerator, report the accelerator set LiteRT really compiled with (or a CPU fallback with
 * its reason), and give the golden record's top-3 on the benchmark's golden input.
 */
@RunWith(AndroidJUnit4::class)
class InstalledModelTest {
    @Test
    fun installedVariantsRunOnEveryAcceleratorAndGiveTheRecordedTop3() {
        val context = InstrumentationRegistry.getInstrumentation().targetContext
        val input = BenchmarkInput.parse(context.assets.open(BenchmarkInput.JSON_ASSET).bufferedReader().use { it.readText() })
        val rgba = context.assets.open(BenchmarkInput.RGBA_ASSET).use { it.readBytes() }
        input.check(rgba)
        val record = context.assets.open(GoldenRecord.ASSET).bufferedReader().use { it.readText() }
        for (v in ModelVariant.values()) {
            assertTrue("${v.modelAsset} is not installed", ClassifierEngine.isInstalled(context, v))
            val golden = GoldenRecord.find(record, ClassifierEngine.artifactSha256(context, v), input.image)
            for (a in AcceleratorChoice.values()) {
                ClassifierEngine.create(context, v, Settings(v, a, 2)).use { e ->
                    val o = e.outcome
                    val expected = if (o.fellBack) AcceleratorOutcome.fallback(a, 2, o.reason!!) else AcceleratorOutcome.compiled(a, 2)
                    assertEquals("$v on $a", expected, o)
                    e.preprocessor.fromRgba(ByteBuffer.wrap(rgba), input.width, input.height, input.width * 4, 4, input.rotationDegrees)
                    val scores = e.run()
                    assertEquals(e.labels.size, scores.size)
                    val top = Postprocess.classify(scores, e.meta.output.kind, e.labels, 3)
                    val check = golden.check(top.map { it.label })
                    assertTrue("$v on ${o.label}: top-3 ${top.map { it.label }}, recorded ${golden.expected}", check.passed)
                }
            }
        }
    }
}
