package org.mvit.demo

import android.Manifest
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
        Text("Fixed input (the shipped model's golden image), 10 warm-up + 50 timed runs per model and accelerator; " +
            "only the inference is timed.", style = MaterialTheme.typography.bodySmall)
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
            (r.threads?.let { " ×$it" } ?: ""), style = MaterialTheme.typography.bodyMedium)
        Text("median ${ms(r.latency.medianMs)} ms · p90 ${ms(r.latency.p90Ms)} ms · load ${ms(r.loadMs ?: Double.NaN)} ms · " +
            "first ${ms(r.firstMs ?: Double.NaN)} ms", style = MaterialTheme.typography.bodySmall)
        r.top3?.let { t -> Text(t.joinToString("  ") { "${it.label} ${String.format(Locale.US, "%.2f", it.score)}" }, style = MaterialTheme.typography.bodySmall) }
        if (r.note.isNotEmpty()) Text(r.note, style = MaterialTheme.typography.bodySmall, color = MaterialTheme.colorScheme.secondary)
    }
}

@Composable
private fun CameraPreview(worker: InferenceWorker) {
    val context = LocalContext.current
    val lifecycleOwner = LocalLifecycleOwner.current
    val previewView = remember { PreviewView(context).apply { scaleType = PreviewView.ScaleType.FILL_CENTER } }
    DisposableEffect(lifecycleOwner) {
        val providerFuture = ProcessCameraProvider.getInstance(context)
        var provider: ProcessCameraProvider? = null
        providerFuture.addListener({
            val p = providerFuture.get()
            provider = p
            val preview = Preview.Builder().build().also { it.setSurfaceProvider(previewView.surfaceProvider) }
            val analysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_YUV_420_888)
                .build()
            analysis.setAnalyzer(worker.executor) { image -> worker.analyze(image) }
            p.unbindAll()
            p.bindToLifecycle(lifecycleOwner, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
        }, ContextCompat.getMainExecutor(context))
        onDispose { provider?.unbindAll() }
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
