package org.mvit.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** Settings, fp32/int8 agreement and photo subsampling: the pure parts of the app's ViewModel. */
class SettingsTest {
    @Test
    fun threadsOutsideTheRangeAreRefused() {
        assertEquals(Settings.DEFAULT_THREADS, Settings().threads)
        for (bad in listOf(0, -1, Settings.MAX_THREADS + 1)) {
            try {
                Settings(threads = bad)
                throw AssertionError("threads=$bad accepted")
            } catch (e: IllegalArgumentException) {
                assertTrue(e.message!!.contains("threads"))
            }
        }
        assertEquals(listOf("cpu", "gpu", "npu"), AcceleratorChoice.values().map { it.id })
    }

    @Test
    fun agreementComparesTop1AndSharedTop3() {
        fun c(vararg idx: Int) = idx.map { Classification(it, "l$it", 0.1) }
        assertEquals(Agreement(true, 3), Agreement.of(c(4, 1, 2), c(4, 2, 1)))
        assertEquals(Agreement(false, 2), Agreement.of(c(4, 1, 2), c(1, 4, 5)))
        assertEquals(Agreement(false, 0), Agreement.of(c(0, 1, 2), c(3, 4, 5)))
        assertFalse(Agreement.of(c(0), c(1)).top1Agrees)
    }

    @Test
    fun photosAreSubsampledButKeepTwiceTheResizeShortSide() {
        assertEquals(4, PhotoSizing.sampleSize(4032, 3024, 256)) // 756 px short side >= 512
        assertEquals(1, PhotoSizing.sampleSize(640, 480, 256))
        assertEquals(2, PhotoSizing.sampleSize(1200, 1024, 256))
        assertEquals(1, PhotoSizing.sampleSize(100, 80, 256))
        for (w in listOf(300, 1000, 4000, 9000)) for (h in listOf(200, 700, 3000)) {
            val s = PhotoSizing.sampleSize(w, h, 288)
            assertTrue("power of two", s and (s - 1) == 0)
            assertTrue("$w x $h / $s keeps >= 576 px", s == 1 || minOf(w, h) / s >= 576)
            assertTrue("$w x $h: $s is the largest", minOf(w, h) / (s * 2) < 576)
        }
    }
}
