package org.mvit.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test

/** What the app reports as the accelerator that ran: LiteRT's own accelerator sets, and fallbacks. */
class AcceleratorsTest {
    @Test
    fun anNpuRequestIsCompiledWithTheCpuAddedAndSaysSo() {
        assertEquals(setOf(AcceleratorChoice.NPU, AcceleratorChoice.CPU), AcceleratorUsed.compiledWith(AcceleratorChoice.NPU))
        assertEquals(setOf(AcceleratorChoice.GPU), AcceleratorUsed.compiledWith(AcceleratorChoice.GPU))
        val npu = AcceleratorOutcome.compiled(AcceleratorChoice.NPU, 4)
        assertEquals(AcceleratorUsed.NPU_WITH_CPU, npu.used)
        assertEquals("npu+cpu", npu.used.id)
        assertEquals("NPU with CPU fallback", npu.label)
        assertEquals(4, npu.threads)
        assertFalse(npu.fellBack)
        assertTrue(npu.note, npu.note.contains("does not say which ops the NPU took"))
    }

    @Test
    fun gpuAndCpuAreWhatWasAsked() {
        val gpu = AcceleratorOutcome.compiled(AcceleratorChoice.GPU, 4)
        assertEquals(listOf("gpu", "GPU", null), listOf(gpu.used.id, gpu.label, gpu.threads))
        assertTrue(gpu.note.contains("whether every op was delegated"))
        val cpu = AcceleratorOutcome.compiled(AcceleratorChoice.CPU, 3)
        assertEquals(listOf("cpu", "CPU ×3", ""), listOf(cpu.used.id, cpu.label, cpu.note))
    }

    @Test
    fun aFallbackNamesItsReason() {
        val f = AcceleratorOutcome.fallback(AcceleratorChoice.GPU, 2, "no OpenCL")
        assertTrue(f.fellBack)
        assertEquals("CPU ×2 (GPU unavailable: no OpenCL)", f.label)
        assertEquals("gpu asked, cpu used: no OpenCL", f.note)
        assertThrowsIae { AcceleratorOutcome(AcceleratorChoice.GPU, AcceleratorUsed.CPU, 2) }
        assertThrowsIae { AcceleratorOutcome(AcceleratorChoice.GPU, AcceleratorUsed.GPU, null, "why") }
        assertThrowsIae { AcceleratorUsed.of(setOf(AcceleratorChoice.NPU)) }
    }

    @Test
    fun everyUsedIdIsInTheSchemaVocabulary() {
        for (u in AcceleratorUsed.values()) assertTrue(u.id, u.id in BenchmarkReport.ACCELERATORS)
    }
}

/** Fails unless [block] throws IllegalArgumentException (require, MetaException). */
fun assertThrowsIae(block: () -> Unit) {
    try {
        block()
    } catch (e: IllegalArgumentException) {
        return
    }
    throw AssertionError("expected IllegalArgumentException")
}
