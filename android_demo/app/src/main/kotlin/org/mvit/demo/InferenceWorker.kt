package org.mvit.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.ImageFormat
import android.graphics.PixelFormat
import android.os.SystemClock
import androidx.camera.core.ImageProxy
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.update
import org.mvit.core.Classification
import org.mvit.core.FrameStats
import org.mvit.core.Postprocess
import org.mvit.core.YuvPlane
import java.nio.ByteBuffer
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

data class UiState(
    val config: EngineConfig = EngineConfig(),
    val installed: Set<ModelVariant> = emptySet(),
    val backend: String = "",
    val top: List<Classification> = emptyList(),
    val preprocessMs: Double = Double.NaN,
    val inferenceMs: Double = Double.NaN,
    val totalMs: Double = Double.NaN,
    val avgTotalMs: Double = Double.NaN,
    val fps: Double = 0.0,
    val error: String? = null,
    val stillImage: Bitmap? = null,
)

/**
 * The single inference thread: CameraX delivers frames on it (ImageAnalysis keeps only the latest),
 * engine (re)creation and still images run on it too, so the model and its buffers are never shared.
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
        configure(EngineConfig(variant = installed.firstOrNull() ?: ModelVariant.FLOAT))
    }

    fun configure(config: EngineConfig) {
        executor.execute {
            engine?.close()
            engine = null
            stats.reset()
            try {
                val e = ClassifierEngine.create(context, config)
                engine = e
                _state.update { it.copy(config = config, backend = e.backend, error = null, top = emptyList()) }
            } catch (t: Throwable) {
                _state.update { it.copy(config = config, backend = "", error = "Cannot load ${config.variant.title} model: ${t.message}") }
            }
        }
    }

    /** ImageAnalysis.Analyzer body; runs on [executor]. Always closes the frame. */
    fun analyze(image: ImageProxy) {
        image.use { frame ->
            if (_state.value.stillImage != null) return
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

    /** Classify a decoded, upright still image (photo mode). */
    fun classifyStill(bitmap: Bitmap?) {
        executor.execute {
            _state.update { it.copy(stillImage = bitmap, top = emptyList()) }
            val e = engine ?: return@execute
            if (bitmap == null) return@execute
            val t0 = SystemClock.elapsedRealtimeNanos()
            val argb = if (bitmap.config == Bitmap.Config.ARGB_8888) bitmap else bitmap.copy(Bitmap.Config.ARGB_8888, false)
            val size = argb.rowBytes * argb.height
            val buf = rgbaScratch?.takeIf { it.capacity() >= size } ?: ByteBuffer.allocateDirect(size).also { rgbaScratch = it }
            buf.clear()
            argb.copyPixelsToBuffer(buf) // ARGB_8888 is laid out as R, G, B, A bytes
            buf.rewind()
            e.preprocessor.fromRgba(buf, argb.width, argb.height, argb.rowBytes, 4, 0)
            stats.reset()
            runModel(e, t0)
        }
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
