package org.mvit.core

import java.lang.management.ManagementFactory

/**
 * Frame conversion on a 640x480 YUV_420_888 camera frame, per stage and in all, on one thread:
 * `android_demo/ci/test_core.sh --bench`. The stages run interleaved (one frame of each per round),
 * and the medians over the rounds are printed, with the bytes allocated per frame.
 * On a phone the same code runs under ART: these JVM figures rank the stages, they are not phone times.
 */
fun main() {
    val rounds = 60
    val f = SyntheticFrame(640, 480)
    val meta = ModelMeta.fromJson(Golden.obj(Golden.objs(Golden.shipped, "models").first { it["app"] == "android" }, "meta"))
    val rgb = RgbImage(640, 480)
    val rotated = RgbImage(480, 640)
    val p = Preprocessor(meta)
    val stages = linkedMapOf<String, () -> Unit>(
        "yuv420 -> rgb" to { FrameConverter.yuv420ToRgb(f.y, f.u, f.v, 640, 480, rgb) },
        "rotate 90" to { FrameConverter.rotate(rgb, 90, rotated) },
        "frame -> model input (rot 90, ${meta.preprocess.interpolation.name.lowercase()} to ${meta.preprocess.inputWidth}x${meta.preprocess.inputHeight})" to
            { p.fromYuv(f.y, f.u, f.v, 640, 480, 90) },
    )
    val times = stages.keys.associateWith { DoubleArray(rounds) }
    repeat(20) { stages.values.forEach { it() } } // JIT warm-up
    val mx = ManagementFactory.getThreadMXBean() as com.sun.management.ThreadMXBean
    val allocated = stages.mapValues { (_, stage) ->
        val before = mx.currentThreadAllocatedBytes
        stage()
        mx.currentThreadAllocatedBytes - before
    }
    for (r in 0 until rounds) {
        for ((name, stage) in stages) {
            val t0 = System.nanoTime()
            stage()
            times.getValue(name)[r] = (System.nanoTime() - t0) / 1e6
        }
    }
    println("frame conversion, 640x480 YUV_420_888 (NV21 layout), 1 thread, ${System.getProperty("java.vm.name")} ${System.getProperty("java.version")}, " +
        "$rounds interleaved rounds after 20 warm-up frames")
    println(String.format(java.util.Locale.ROOT, "%-58s %10s %10s %12s", "stage", "median ms", "p90 ms", "bytes/frame"))
    for ((name, t) in times) {
        val s = LatencyStats.of(t, 20)
        println(String.format(java.util.Locale.ROOT, "%-58s %10.3f %10.3f %12d", name, s.medianMs, s.p90Ms, allocated.getValue(name)))
    }
}
