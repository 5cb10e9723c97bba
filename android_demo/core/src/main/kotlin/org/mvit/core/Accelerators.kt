package org.mvit.core

/**
 * What a compiled model may run on: the accelerator set LiteRT compiled it with. [id] is the
 * `accelerator_used` vocabulary of docs/device_results.md, [title] what the app shows.
 */
enum class AcceleratorUsed(val id: String, val title: String) {
    CPU("cpu", "CPU"),
    GPU("gpu", "GPU"),
    NPU_WITH_CPU("npu+cpu", "NPU with CPU fallback"),
    ;

    companion object {
        /**
         * The accelerators LiteRT compiles with when [asked] is the only one requested: LiteRT's
         * `CompiledModel.create` adds the CPU to an NPU-only request so that partly compiled models
         * run (litert/kotlin/.../Model.kt); GPU and CPU requests are passed on as they are.
         */
        fun compiledWith(asked: AcceleratorChoice): Set<AcceleratorChoice> =
            if (asked == AcceleratorChoice.NPU) setOf(AcceleratorChoice.NPU, AcceleratorChoice.CPU) else setOf(asked)

        /** The label of an accelerator set LiteRT compiled a model with. */
        fun of(compiled: Set<AcceleratorChoice>): AcceleratorUsed = when (compiled) {
            setOf(AcceleratorChoice.CPU) -> CPU
            setOf(AcceleratorChoice.GPU) -> GPU
            setOf(AcceleratorChoice.NPU, AcceleratorChoice.CPU) -> NPU_WITH_CPU
            else -> throw IllegalArgumentException("no label for the accelerator set $compiled")
        }
    }
}

/**
 * What ran after asking for [asked]: [used] is the accelerator set that compiled the model (the CPU
 * alone after a fallback), [reason] why it fell back. The app shows [label]; the benchmark JSON
 * gets [note]. [threads] is the CPU thread count when the CPU takes part.
 */
data class AcceleratorOutcome(val asked: AcceleratorChoice, val used: AcceleratorUsed, val threads: Int?, val reason: String? = null) {
    init {
        require(fellBack == (reason != null)) { "a fallback needs a reason, and only a fallback has one" }
    }

    /** True when the model was compiled for the CPU alone although another accelerator was asked for. */
    val fellBack: Boolean get() = asked != AcceleratorChoice.CPU && used == AcceleratorUsed.CPU

    /** The backend line the app shows, e.g. `NPU with CPU fallback` or `CPU ×4 (GPU unavailable: …)`. */
    val label: String
        get() {
            val base = if (used == AcceleratorUsed.CPU && threads != null) "CPU ×$threads" else used.title
            return if (fellBack) "$base (${asked.title} unavailable: $reason)" else base
        }

    /** The benchmark row's note: why it fell back, or what LiteRT does not report. */
    val note: String
        get() = when {
            fellBack -> "${asked.id} asked, ${used.id} used: $reason"
            used == AcceleratorUsed.NPU_WITH_CPU -> "LiteRT compiles an NPU-only request with the CPU added; its Kotlin API does not say which ops the NPU took"
            used == AcceleratorUsed.GPU -> "LiteRT's Kotlin API does not say whether every op was delegated to the GPU"
            else -> ""
        }

    companion object {
        /** The model compiled for [asked] (with the set LiteRT really uses, see [AcceleratorUsed.compiledWith]). */
        fun compiled(asked: AcceleratorChoice, threads: Int): AcceleratorOutcome {
            val used = AcceleratorUsed.of(AcceleratorUsed.compiledWith(asked))
            return AcceleratorOutcome(asked, used, threads.takeIf { AcceleratorChoice.CPU in AcceleratorUsed.compiledWith(asked) })
        }

        /** [asked] failed for [reason]; the model was compiled for the CPU with [threads]. */
        fun fallback(asked: AcceleratorChoice, threads: Int, reason: String): AcceleratorOutcome =
            AcceleratorOutcome(asked, AcceleratorUsed.CPU, threads, reason)
    }
}
