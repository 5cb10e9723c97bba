package org.mvit.demo

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith

/**
 * On a device/emulator (`./gradlew :app:connectedAndroidTest`): every installed variant loads,
 * its metadata is valid and a forward pass yields one score per label.
 */
@RunWith(AndroidJUnit4::class)
class InstalledModelTest {
    @Test
    fun installedVariantsRun() {
        val context = InstrumentationRegistry.getInstrumentation().targetContext
        val installed = ModelVariant.values().filter { ClassifierEngine.isInstalled(context, it) }
        assertTrue("no model installed in app/src/main/assets", installed.isNotEmpty())
        for (v in installed) {
            ClassifierEngine.create(context, EngineConfig(variant = v)).use { e ->
                val rgba = java.nio.ByteBuffer.allocate(64 * 48 * 4)
                e.preprocessor.fromRgba(rgba, 64, 48, 64 * 4, 4, 90)
                val scores = e.run()
                assertEquals(e.labels.size, scores.size)
            }
        }
    }
}
