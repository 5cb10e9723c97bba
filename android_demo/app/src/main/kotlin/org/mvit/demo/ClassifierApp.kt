package org.mvit.demo

import android.Manifest
import android.hardware.display.DisplayManager
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.compose.foundation.Image
import androidx.compose.foundation.background
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.Spacer
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.height
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.WindowInsets
import androidx.compose.foundation.layout.safeDrawing
import androidx.compose.foundation.layout.width
import androidx.compose.foundation.layout.windowInsetsPadding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.FilterChip
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Slider
import androidx.compose.material3.Surface
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.material3.darkColorScheme
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.LaunchedEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableFloatStateOf
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.layout.ContentScale
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import androidx.compose.ui.viewinterop.AndroidView
import androidx.core.content.ContextCompat
import androidx.lifecycle.Lifecycle
import androidx.lifecycle.LifecycleEventObserver
import androidx.lifecycle.compose.LocalLifecycleOwner
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import org.mvit.core.AcceleratorChoice
import org.mvit.core.BenchmarkRow
import org.mvit.core.Classification
import org.mvit.core.ModelVariant
import org.mvit.core.Settings
import java.util.Locale

private enum class Permission { UNKNOWN, GRANTED, DENIED }

@Composable
fun ClassifierApp(viewModel: ClassifierViewModel, hasCameraPermission: () -> Boolean, onPickPhoto: () -> Unit, onOpenSettings: () -> Unit) {
    MaterialTheme(colorScheme = darkColorScheme()) {
        Surface(Modifier.fillMaxSize()) {
            val state by viewModel.state.collectAsStateWithLifecycle()
            var permission by remember { mutableStateOf(if (hasCameraPermission()) Permission.GRANTED else Permission.UNKNOWN) }
            val request = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
                permission = if (granted) Permission.GRANTED else Permission.DENIED
            }
            LaunchedEffect(Unit) {
                if (permission == Permission.UNKNOWN) request.launch(Manifest.permission.CAMERA)
            }
            // Granted (or revoked) in the system settings while the app was in the background.
            val lifecycleOwner = LocalLifecycleOwner.current
            DisposableEffect(lifecycleOwner) {
                val observer = LifecycleEventObserver { _, event ->
                    if (event == Lifecycle.Event.ON_RESUME) {
                        val granted = hasCameraPermission()
                        if (granted) permission = Permission.GRANTED else if (permission == Permission.GRANTED) permission = Permission.DENIED
                    }
                }
                lifecycleOwner.lifecycle.addObserver(observer)
                onDispose { lifecycleOwner.lifecycle.removeObserver(observer) }
            }

            // targetSdk 36 draws edge to edge: keep every control clear of the status and navigation bars.
            Column(Modifier.fillMaxSize().windowInsetsPadding(WindowInsets.safeDrawing)) {
                ModeRow(state.mode, viewModel::setMode)
                Box(Modifier.fillMaxWidth().weight(1f).background(Color.Black), contentAlignment = Alignment.Center) {
                    val photo = state.photo
                    when {
                        state.mode == Mode.BENCHMARK -> BenchmarkPanel(state, viewModel)
                        state.mode == Mode.PHOTO && photo != null ->
                            Image(photo.asImageBitmap(), contentDescription = "photo", modifier = Modifier.fillMaxSize(), contentScale = ContentScale.Fit)
                        state.mode == Mode.PHOTO -> OutlinedButton(onClick = onPickPhoto) { Text("Choose a photo…") }
                        permission == Permission.GRANTED -> CameraPreview(viewModel.worker)
                        permission == Permission.DENIED -> Column(Modifier.padding(24.dp), horizontalAlignment = Alignment.CenterHorizontally) {
                            Text(stringResource(R.string.camera_denied))
                            Spacer(Modifier.height(12.dp))
                            Button(onClick = onOpenSettings) { Text("Open settings") }
                        }
                        else -> Text("Waiting for camera permission…")
                    }
                }
                if (state.mode != Mode.BENCHMARK) ResultsPanel(state)
                SettingsPanel(state, viewModel, onPickPhoto)
            }
        }
    }
}

@Composable
private fun ModeRow(mode: Mode, onMode: (Mode) -> Unit) {
    Row(Modifier.fillMaxWidth().padding(horizontal = 12.dp), horizontalArrangement = Arrangement.spacedBy(8.dp)) {
        for (m in Mode.values()) {
            FilterChip(selected = mode == m, onClick = { onMode(m) }, label = { Text(m.name.lowercase().replaceFirstChar { it.uppercase() }) })
        }
    }
}

@Composable
private fun BenchmarkPanel(state: UiState, viewModel: ClassifierViewModel) {
    val b = state.benchmark
    Column(Modifier.fillMaxSize().padding(12.dp).verticalScroll(rememberScrollState())) {
        Text("Fixed input (the shipped model's golden image): every model on every accelerator, ${ClassifierViewModel.BENCHMARK.runs} timed " +
            "runs each over ${ClassifierViewModel.BENCHMARK.rounds} interleaved rounds, ${ClassifierViewModel.BENCHMARK.cooldownMs / 1000} s " +
            "cool-down between turns; only the inference is timed. Each row's top-3 is checked against the golden record.",
            style = MaterialTheme.typography.bodySmall)
        Spacer(Modifier.height(8.dp))
        Button(onClick = { viewModel.runBenchmark() }, enabled = !b.running && state.installed.isNotEmpty()) { Text(if (b.running) "Running…" else "Run benchmark") }
        if (b.progress.isNotEmpty()) Text(b.progress, style = MaterialTheme.typography.bodySmall)
        for (r in b.rows) BenchmarkRowView(r)
        b.savedTo?.let { Text("Saved: $it\n(adb pull it, then mvit-bench --device-results FILE.json)", style = MaterialTheme.typography.bodySmall) }
    }
}

@Composable
private fun BenchmarkRowView(r: BenchmarkRow) {
    Column(Modifier.fillMaxWidth().padding(vertical = 4.dp)) {
        Text("${r.precision} · ${r.accelerator}${if (r.acceleratorUsed != r.accelerator) " → ${r.acceleratorUsed}" else ""}" +
            (r.threads?.let { " ×$it" } ?: "") + (if (r.failed) " · FAILED golden check" else "") + (if (r.throttled == true) " · throttled" else ""),
            style = MaterialTheme.typography.bodyMedium, color = if (r.failed) MaterialTheme.colorScheme.error else Color.Unspecified)
        Text("thermal ${r.thermalBefore ?: "?"} → ${r.thermalAfter ?: "?"} · ${r.rounds ?: 1} rounds", style = MaterialTheme.typography.bodySmall)
        Text("median ${ms(r.latency.medianMs)} ms · p90 ${ms(r.latency.p90Ms)} ms · load ${ms(r.loadMs ?: Double.NaN)} ms · " +
            "first ${ms(r.firstMs ?: Double.NaN)} ms", style = MaterialTheme.typography.bodySmall)
        r.top3?.let { t -> Text(t.joinToString("  ") { "${it.label} ${String.format(Locale.US, "%.2f", it.score)}" }, style = MaterialTheme.typography.bodySmall) }
        if (r.note.isNotEmpty()) Text(r.note, style = MaterialTheme.typography.bodySmall, color = MaterialTheme.colorScheme.secondary)
    }
}

/**
 * The back camera bound to the lifecycle while this composable is shown. The provider future may
 * complete after the composable left (mode switch): then nothing is bound. Binding failures (no
 * back camera: the manifest does not require one) are shown instead of crashing, and the analysis
 * target rotation follows the display, so a 180° flip (no activity restart) keeps frames upright.
 */
@Composable
private fun CameraPreview(worker: InferenceWorker) {
    val context = LocalContext.current
    val lifecycleOwner = LocalLifecycleOwner.current
    val previewView = remember { PreviewView(context).apply { scaleType = PreviewView.ScaleType.FILL_CENTER } }
    DisposableEffect(lifecycleOwner) {
        val providerFuture = ProcessCameraProvider.getInstance(context)
        var provider: ProcessCameraProvider? = null
        var analysis: ImageAnalysis? = null
        var disposed = false
        val displays = context.getSystemService(DisplayManager::class.java)
        val displayListener = object : DisplayManager.DisplayListener {
            override fun onDisplayAdded(displayId: Int) = Unit
            override fun onDisplayRemoved(displayId: Int) = Unit
            override fun onDisplayChanged(displayId: Int) {
                val d = previewView.display ?: return
                if (d.displayId == displayId) analysis?.targetRotation = d.rotation
            }
        }
        displays?.registerDisplayListener(displayListener, null)
        providerFuture.addListener({
            if (disposed) return@addListener
            val p = try {
                providerFuture.get()
            } catch (e: Exception) {
                worker.cameraError("Camera unavailable: ${e.cause?.message ?: e.message}")
                return@addListener
            }
            provider = p
            val preview = Preview.Builder().build().also { it.setSurfaceProvider(previewView.surfaceProvider) }
            val a = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_YUV_420_888)
                .build()
            previewView.display?.let { a.targetRotation = it.rotation }
            a.setAnalyzer(worker.executor) { image -> worker.analyze(image) }
            analysis = a
            try {
                p.unbindAll()
                p.bindToLifecycle(lifecycleOwner, CameraSelector.DEFAULT_BACK_CAMERA, preview, a)
            } catch (e: IllegalArgumentException) { // no camera matches the selector
                worker.cameraError("No back camera on this device: use Photo or Benchmark mode")
            } catch (e: IllegalStateException) {
                worker.cameraError("Camera unavailable: ${e.message}")
            }
        }, ContextCompat.getMainExecutor(context))
        onDispose {
            disposed = true
            displays?.unregisterDisplayListener(displayListener)
            analysis?.clearAnalyzer()
            provider?.unbindAll()
        }
    }
    AndroidView(factory = { previewView }, modifier = Modifier.fillMaxSize())
}

private fun ms(v: Double) = if (v.isNaN()) "–" else String.format(Locale.US, "%.1f", v)

@Composable
private fun ResultsPanel(state: UiState) {
    Column(Modifier.fillMaxWidth().padding(12.dp)) {
        state.error?.let { Text(it, color = MaterialTheme.colorScheme.error) }
        if (state.installed.isEmpty()) Text(stringResource(R.string.model_missing), color = MaterialTheme.colorScheme.error)
        val cmp = state.comparison
        if (cmp != null) {
            Text("float", style = MaterialTheme.typography.labelMedium)
            for (c in cmp.float) ScoreBar(c)
            Text("int8", style = MaterialTheme.typography.labelMedium)
            for (c in cmp.int8) ScoreBar(c)
            Text((if (cmp.agreement.top1Agrees) "top-1 agrees" else "top-1 DIFFERS") + " · ${cmp.agreement.sharedTop3}/3 of the top-3 shared · ${cmp.backends}",
                style = MaterialTheme.typography.bodySmall)
        } else {
            for (c in state.top) ScoreBar(c)
            if (state.top.isEmpty()) Text("…")
        }
        Spacer(Modifier.height(6.dp))
        Text(
            "pre ${ms(state.preprocessMs)} ms · inference ${ms(state.inferenceMs)} ms · total ${ms(state.totalMs)} ms " +
                "(avg ${ms(state.avgTotalMs)}) · ${String.format(Locale.US, "%.1f", state.fps)} FPS",
            style = MaterialTheme.typography.bodySmall,
        )
        Text("backend: ${state.backend.ifEmpty { "–" }} · model: ${state.settings.variant.title}", style = MaterialTheme.typography.bodySmall)
    }
}

@Composable
private fun ScoreBar(c: Classification) {
    Row(Modifier.fillMaxWidth().padding(vertical = 2.dp), verticalAlignment = Alignment.CenterVertically) {
        Text(c.label, Modifier.width(110.dp))
        LinearProgressIndicator(progress = { c.score.toFloat().coerceIn(0f, 1f) }, modifier = Modifier.weight(1f).height(10.dp))
        Text(String.format(Locale.US, "%5.1f%%", c.score * 100), Modifier.width(64.dp).padding(start = 8.dp))
    }
}

@Composable
private fun SettingsPanel(state: UiState, viewModel: ClassifierViewModel, onPickPhoto: () -> Unit) {
    val cfg = state.settings
    var threads by remember(cfg.threads) { mutableFloatStateOf(cfg.threads.toFloat()) }
    Column(Modifier.fillMaxWidth().padding(horizontal = 12.dp, vertical = 4.dp)) {
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp), verticalAlignment = Alignment.CenterVertically) {
            Text("Accelerator")
            for (a in AcceleratorChoice.values()) {
                FilterChip(selected = cfg.accelerator == a, onClick = { viewModel.apply(cfg.copy(accelerator = a)) }, label = { Text(a.title) })
            }
        }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp), verticalAlignment = Alignment.CenterVertically) {
            Text("Model")
            for (v in ModelVariant.values()) {
                FilterChip(
                    selected = cfg.variant == v,
                    enabled = v in state.installed,
                    onClick = { viewModel.apply(cfg.copy(variant = v)) },
                    label = { Text(v.title) },
                )
            }
        }
        Row(verticalAlignment = Alignment.CenterVertically) {
            Text("Threads ${threads.toInt()}", Modifier.width(96.dp))
            Slider(
                value = threads,
                onValueChange = { threads = it },
                onValueChangeFinished = { viewModel.apply(cfg.copy(threads = threads.toInt().coerceIn(1, Settings.MAX_THREADS))) },
                valueRange = 1f..Settings.MAX_THREADS.toFloat(),
                steps = Settings.MAX_THREADS - 2,
                enabled = cfg.accelerator == AcceleratorChoice.CPU,
                modifier = Modifier.weight(1f),
            )
        }
        if (state.mode == Mode.PHOTO) {
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                OutlinedButton(onClick = onPickPhoto) { Text("Photo…") }
                TextButton(onClick = viewModel::compare, enabled = state.photo != null && state.installed.size == 2) { Text("Compare float / int8") }
            }
        }
    }
}
