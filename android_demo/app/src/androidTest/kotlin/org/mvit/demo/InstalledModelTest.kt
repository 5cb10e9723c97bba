package org.mvit.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import org.mvit.core.AcceleratorChoice
import org.mvit.core.AcceleratorChoice.CPU
import org.mvit.core.BenchmarkInput
import org.mvit.core.ModelVariant
import org.mvit.core.Postprocess
import org.mvit.core.Settings
import java.nio.ByteBuffer

/**
 * On a device or emulator (`./gradlew :app:connectedAndroidTest`): both installed variants load on
 * every accelerator (running where LiteRT offers it, on the CPU with a reason where it does not)
 * and classify the benchmark's golden input into one score per label.
 */
@RunWith(AndroidJUnit4::class)
class InstalledModelTest {
    @Test
    fun installedVariantsRunOnEveryAccelerator() {
        val context = InstrumentationRegistry.getInstrumentation().targetContext
        val input = BenchmarkInput.parse(context.assets.open(BenchmarkInput.JSON_ASSET).bufferedReader().use { it.readText() })
        val rgba = context.assets.open(BenchmarkInput.RGBA_ASSET).use { it.readBytes() }
        input.check(rgba)
        for (v in ModelVariant.values()) {
            assertTrue("${v.modelAsset} is not installed", ClassifierEngine.isInstalled(context, v))
            for (a in AcceleratorChoice.values()) {
                ClassifierEngine.create(context, v, Settings(v, a, 2)).use { e ->
                    assertTrue("$v on $a ran on ${e.outcome.used}", e.outcome.used == a || e.outcome.used == CPU)
                    e.preprocessor.fromRgba(ByteBuffer.wrap(rgba), input.width, input.height, input.width * 4, 4, input.rotationDegrees)
                    val scores = e.run()
                    assertEquals(e.labels.size, scores.size)
                    assertEquals(3, Postprocess.classify(scores, e.meta.output.kind, e.labels, 3).size)
                }
            }
        }
    }
}
