package org.mvit.demo

import android.app.Application
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.graphics.Matrix
import android.net.Uri
import android.os.Build
import androidx.exifinterface.media.ExifInterface
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import org.mvit.core.PhotoSizing
import org.mvit.core.RoundPlan
import org.mvit.core.Settings
import java.io.File

/**
 * Holds the inference worker and the settings across configuration changes (rotation keeps the
 * loaded model, the settings and the chosen photo); photos are decoded off the main thread.
 */
class ClassifierViewModel(application: Application) : AndroidViewModel(application) {
    val worker = InferenceWorker(application)
    val state = worker.state

    fun apply(settings: Settings) = worker.configure(settings)

    fun setMode(mode: Mode) = worker.setMode(mode)

    fun compare() = worker.compare()

    /** Benchmark mode: [BENCHMARK]'s rounds, written under the app's external files folder. */
    fun runBenchmark() = worker.runBenchmark(BENCHMARK, File(getApplication<Application>().getExternalFilesDir(null), "benchmarks"))

    /** Decode [uri] upright and subsampled (PhotoSizing) on an IO thread, then classify it. */
    fun pickPhoto(uri: Uri) {
        viewModelScope.launch {
            val resizeShort = state.value.resizeShort
            val bitmap = withContext(Dispatchers.IO) { runCatching { decodeUpright(uri, resizeShort) }.getOrNull() }
            if (bitmap != null) worker.showPhoto(bitmap)
        }
    }

    private fun decodeUpright(uri: Uri, resizeShort: Int): Bitmap? {
        val resolver = getApplication<Application>().contentResolver
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.P) {
            // ImageDecoder applies the EXIF orientation itself.
            return ImageDecoder.decodeBitmap(ImageDecoder.createSource(resolver, uri)) { decoder, info, _ ->
                decoder.setTargetSampleSize(PhotoSizing.sampleSize(info.size.width, info.size.height, resizeShort))
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
                decoder.isMutableRequired = false
            }
        }
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        resolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, bounds) } ?: return null
        if (bounds.outWidth <= 0 || bounds.outHeight <= 0) return null
        val opts = BitmapFactory.Options().apply { inSampleSize = PhotoSizing.sampleSize(bounds.outWidth, bounds.outHeight, resizeShort) }
        val bmp = resolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, opts) } ?: return null
        val degrees = resolver.openInputStream(uri)?.use { ExifInterface(it).rotationDegrees } ?: 0
        return if (degrees == 0) bmp else Bitmap.createBitmap(bmp, 0, 0, bmp.width, bmp.height, Matrix().apply { postRotate(degrees.toFloat()) }, true)
    }

    companion object {
        /** 50 timed runs per configuration over 5 interleaved rounds, 3 s cool-down between turns. */
        val BENCHMARK = RoundPlan(rounds = 5, runs = 50, warmup = 10, cooldownMs = 3_000)
    }

    override fun onCleared() {
        worker.close()
    }
}
