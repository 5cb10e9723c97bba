package org.mvit.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.ImageFormat
import android.graphics.PixelFormat
import android.os.Build
import android.os.PowerManager
import android.os.SystemClock
import androidx.annotation.RequiresApi
import androidx.camera.core.ImageProxy
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import org.mvit.core.AcceleratorChoice
import org.mvit.core.Agreement
import org.mvit.core.BenchmarkInput
import org.mvit.core.BenchmarkReport
import org.mvit.core.BenchmarkRow
import org.mvit.core.Classification
import org.mvit.core.FrameStats
import org.mvit.core.GoldenRecord
import org.mvit.core.InterleavedBenchmark
import org.mvit.core.ModelVariant
import org.mvit.core.Postprocess
import org.mvit.core.RoundPlan
import org.mvit.core.RoundsResult
import org.mvit.core.Settings
import org.mvit.core.ThermalScale
import org.mvit.core.YuvPlane
import java.io.File
import java.nio.ByteBuffer
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

enum class Mode { CAMERA, PHOTO, BENCHMARK }

/** fp32 and int8 on the same photo. */
data class Comparison(val float: List<Classification>, val int8: List<Classification>, val agreement: Agreement, val backends: String)

data class BenchmarkState(val running: Boolean = false, val progress: String = "", val rows: List<BenchmarkRow> = emptyList(), val savedTo: String? = null)

data class UiState(
    val settings: Settings = Settings(),
    val mode: Mode = Mode.CAMERA,
    val installed: Set<ModelVariant> = emptySet(),
    val backend: String = "",
    val top: List<Classification> = emptyList(),
    val preprocessMs: Double = Double.NaN,
    val inferenceMs: Double = Double.NaN,
    val totalMs: Double = Double.NaN,
    val avgTotalMs: Double = Double.NaN,
    val fps: Double = 0.0,
    val error: String? = null,
    val photo: Bitmap? = null,
    val comparison: Comparison? = null,
    val benchmark: BenchmarkState = BenchmarkState(),
    /** The loaded model's `preprocess.resize_short`: how far photos may be subsampled when decoded. */
    val resizeShort: Int = 256,
)

/**
 * The single inference thread: CameraX delivers frames on it (ImageAnalysis keeps only the latest),
 * engine (re)creation, photos, comparisons and benchmarks run on it too, so a model and its buffers
 * are never shared. Owned by [ClassifierViewModel], so it survives rotation.
 */
class InferenceWorker(private val context: Context) : AutoCloseable {
    val executor: ExecutorService = Executors.newSingleThreadExecutor { r -> Thread(r, "mvit-inference") }
    private val _state = MutableStateFlow(UiState())
    val state: StateFlow<UiState> = _state.asStateFlow()
    private var engine: ClassifierEngine? = null
    private val stats = FrameStats(30)
    private var rgbaScratch: ByteBuffer? = null

    init {
        val installed = ModelVariant.values().filter { ClassifierEngine.isInstalled(context, it) }.toSet()
        _state.update { it.copy(installed = installed) }
        configure(Settings(variant = installed.firstOrNull() ?: ModelVariant.FLOAT))
    }

    /** New settings: reload the engine, then re-run the photo (and the comparison) when one is shown. */
    fun configure(settings: Settings) = executor.execute {
        load(settings)
        val s = _state.value
        if (s.photo != null) {
            classifyPhoto()
            if (s.comparison != null) compareNow()
        }
    }

    private fun load(settings: Settings) {
        engine?.close()
        engine = null
        stats.reset()
        _state.update { it.copy(settings = settings, top = emptyList(), backend = "loading…") }
        try {
            val e = ClassifierEngine.create(context, settings.variant, settings)
            engine = e
            _state.update { it.copy(backend = e.outcome.label, resizeShort = e.meta.preprocess.resizeShort, error = null) }
        } catch (t: Throwable) {
            _state.update { it.copy(backend = "", error = "Cannot load the ${settings.variant.title} model: ${t.message}") }
        }
    }

    fun setMode(mode: Mode) = executor.execute {
        _state.update { it.copy(mode = mode, photo = if (mode == Mode.PHOTO) it.photo else null, comparison = null, top = emptyList()) }
        stats.reset()
    }

    /** ImageAnalysis.Analyzer body; runs on [executor]. Always closes the frame. */
    fun analyze(image: ImageProxy) {
        image.use { frame ->
            if (_state.value.mode != Mode.CAMERA) return
            val e = engine ?: return
            val t0 = SystemClock.elapsedRealtimeNanos()
            val rotation = frame.imageInfo.rotationDegrees
            when (frame.format) {
                ImageFormat.YUV_420_888 -> {
                    val p = frame.planes
                    e.preprocessor.fromYuv(
                        YuvPlane(p[0].buffer, p[0].rowStride, p[0].pixelStride),
                        YuvPlane(p[1].buffer, p[1].rowStride, p[1].pixelStride),
                        YuvPlane(p[2].buffer, p[2].rowStride, p[2].pixelStride),
                        frame.width, frame.height, rotation,
                    )
                }
                PixelFormat.RGBA_8888 -> {
                    val p = frame.planes[0]
                    e.preprocessor.fromRgba(p.buffer, frame.width, frame.height, p.rowStride, p.pixelStride, rotation)
                }
                else -> {
                    _state.update { it.copy(error = "Unsupported camera format ${frame.format}") }
                    return
                }
            }
            runModel(e, t0)
        }
    }

    /** Photo mode: show and classify an upright, already downsampled photo. */
    fun showPhoto(bitmap: Bitmap) = executor.execute {
        _state.update { it.copy(mode = Mode.PHOTO, photo = bitmap, comparison = null) }
        classifyPhoto()
    }

    private fun loadPhoto(e: ClassifierEngine, bitmap: Bitmap) {
        val argb = if (bitmap.config == Bitmap.Config.ARGB_8888) bitmap else bitmap.copy(Bitmap.Config.ARGB_8888, false)
        val size = argb.rowBytes * argb.height
        val buf = rgbaScratch?.takeIf { it.capacity() >= size } ?: ByteBuffer.allocateDirect(size).also { rgbaScratch = it }
        buf.clear()
        argb.copyPixelsToBuffer(buf) // ARGB_8888 is laid out as R, G, B, A bytes
        buf.rewind()
        e.preprocessor.fromRgba(buf, argb.width, argb.height, argb.rowBytes, 4, 0)
    }

    private fun classifyPhoto() {
        val e = engine ?: return
        val bitmap = _state.value.photo ?: return
        val t0 = SystemClock.elapsedRealtimeNanos()
        loadPhoto(e, bitmap)
        stats.reset()
        runModel(e, t0)
    }

    /** Photo mode: the float and the int8 model on the same photo, with the current accelerator. */
    fun compare() = executor.execute { compareNow() }

    private fun compareNow() {
        val bitmap = _state.value.photo ?: return
        val settings = _state.value.settings
        try {
            val tops = HashMap<ModelVariant, List<Classification>>()
            val backends = ArrayList<String>()
            for (v in ModelVariant.values()) {
                val e = if (v == engine?.variant) engine!! else ClassifierEngine.create(context, v, settings)
                try {
                    loadPhoto(e, bitmap)
                    tops[v] = Postprocess.classify(e.run(), e.meta.output.kind, e.labels, 3)
                    backends += "${v.title}: ${e.outcome.label}"
                } finally {
                    if (e !== engine) e.close()
                }
            }
            val f = tops.getValue(ModelVariant.FLOAT)
            val q = tops.getValue(ModelVariant.INT8)
            _state.update { it.copy(comparison = Comparison(f, q, Agreement.of(f, q), backends.joinToString(" · ")), error = null) }
        } catch (t: Throwable) {
            _state.update { it.copy(error = "Comparison failed: ${t.message}") }
        }
    }

    /** The camera could not be bound (no back camera, camera in use): shown instead of a crash. */
    fun cameraError(message: String) = _state.update { it.copy(error = message) }

    /**
     * Benchmark mode: every installed model on every accelerator (CPU with the chosen threads, GPU,
     * NPU; a fallback is reported as such), on the fixed golden input, interleaved over [plan]'s
     * rounds with its cool-down and the thermal status around each turn; each row's top-3 is
     * checked against the golden record. Writes the JSON report into [outDir] and shows the rows.
     */
    fun runBenchmark(plan: RoundPlan, outDir: File) = executor.execute {
        val settings = _state.value.settings
        val engines = ArrayList<ClassifierEngine>()
        fun progress(text: String, rows: List<BenchmarkRow> = emptyList()) = _state.update { it.copy(benchmark = BenchmarkState(true, text, rows)) }
        try {
            val input = BenchmarkInput.parse(context.assets.open(BenchmarkInput.JSON_ASSET).bufferedReader().use { it.readText() })
            val rgba = context.assets.open(BenchmarkInput.RGBA_ASSET).use { it.readBytes() }
            input.check(rgba)
            val record = context.assets.open(GoldenRecord.ASSET).bufferedReader().use { it.readText() }
            engine?.close()
            engine = null
            val shas = HashMap<ModelVariant, String>()
            for (v in _state.value.installed.sortedBy { it.ordinal }) {
                shas[v] = ClassifierEngine.artifactSha256(context, v)
                for (a in AcceleratorChoice.values()) {
                    progress("${v.title} on ${a.title}: loading")
                    val e = ClassifierEngine.create(context, v, settings.copy(variant = v, accelerator = a))
                    engines += e
                    e.preprocessor.fromRgba(ByteBuffer.wrap(rgba), input.width, input.height, input.width * 4, 4, input.rotationDegrees)
                    e.writeInput()
                }
            }
            val results = InterleavedBenchmark.run(
                engines.size, plan, ThermalScale.ANDROID, SystemClock::elapsedRealtimeNanos, thermalSensor(),
                pause = { Thread.sleep(it) },
                turn = { c, r -> progress("round ${r + 1}/${plan.rounds}: ${engines[c].variant.title} on ${engines[c].outcome.label}") },
            ) { c -> engines[c].invoke() }
            val rows = engines.zip(results).map { (e, m) -> row(e, m, shas.getValue(e.variant), input.image, record) }
            val report = BenchmarkReport(BenchmarkReport.isoUtc(System.currentTimeMillis()), "android-app", deviceInfo(), rows)
            outDir.mkdirs()
            val file = report.writeTo(File(outDir, "mvit-device-results-${System.currentTimeMillis()}.json"))
            _state.update { it.copy(benchmark = BenchmarkState(false, "done", rows, file.absolutePath), error = null) }
        } catch (t: Throwable) {
            _state.update { it.copy(benchmark = BenchmarkState(false, "failed"), error = "Benchmark failed: ${t.message}") }
        } finally {
            engines.forEach { it.close() }
            load(settings)
        }
    }

    /** `PowerManager.getCurrentThermalStatus` (Android 10+); null where Android has no thermal status. */
    private fun thermalSensor(): (() -> Int)? {
        if (Build.VERSION.SDK_INT < Build.VERSION_CODES.Q) return null
        val power = context.getSystemService(PowerManager::class.java) ?: return null
        return { thermalStatus(power) }
    }

    @RequiresApi(Build.VERSION_CODES.Q)
    private fun thermalStatus(power: PowerManager): Int = power.currentThermalStatus

    /** One JSON row: the engine's last output (the golden input) gives the top-3 that is checked. */
    private fun row(e: ClassifierEngine, m: RoundsResult, sha: String, image: String, record: String): BenchmarkRow {
        val top = Postprocess.classify(e.readScores(), e.meta.output.kind, e.labels, 3)
        val golden = GoldenRecord.find(record, sha, image).check(top.map { it.label })
        val (before, after) = m.thermalNames(ThermalScale.ANDROID)
        val notes = listOf(e.outcome.note, "input: $image", if (golden.passed) "" else "FAILED: top-3 differs from the golden record",
            if (m.throttled == null) "no thermal status before Android 10" else "")
        return BenchmarkRow(
            model = e.meta.architecture, artifact = e.variant.modelAsset, artifactSha256 = sha, format = "tflite",
            precision = e.meta.precision, accelerator = e.outcome.asked.id, acceleratorUsed = e.outcome.used.id,
            threads = e.outcome.threads, latency = m.latency, loadMs = e.loadMs, firstMs = m.firstMs, top3 = top,
            note = notes.filter { it.isNotEmpty() }.joinToString("; "), rounds = m.rounds, thermalBefore = before,
            thermalAfter = after, throttled = m.throttled, golden = golden,
        )
    }

    private fun runModel(e: ClassifierEngine, t0: Long) {
        try {
            val t1 = SystemClock.elapsedRealtimeNanos()
            val scores = e.run()
            val t2 = SystemClock.elapsedRealtimeNanos()
            val top = Postprocess.classify(scores, e.meta.output.kind, e.labels, 3)
            val t3 = SystemClock.elapsedRealtimeNanos()
            val pre = (t1 - t0) / 1e6
            val inf = (t2 - t1) / 1e6
            val tot = (t3 - t0) / 1e6
            stats.record(pre, inf, tot, t3)
            _state.update {
                it.copy(top = top, preprocessMs = pre, inferenceMs = inf, totalMs = tot, avgTotalMs = stats.totalMs.average, fps = stats.fps, error = null)
            }
        } catch (t: Throwable) {
            _state.update { it.copy(error = "Inference failed: ${t.message}") }
        }
    }

    override fun close() {
        executor.execute { engine?.close(); engine = null }
        executor.shutdown()
    }
}
