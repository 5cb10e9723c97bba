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
import androidx.compose.foundation.layout.width
import androidx.compose.material3.Button
import androidx.compose.material3.FilterChip
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Slider
import androidx.compose.material3.Surface
import androidx.compose.material3.Text
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
import org.mvit.core.Classification
import java.util.Locale

private enum class Permission { UNKNOWN, GRANTED, DENIED }

@Composable
fun ClassifierApp(worker: InferenceWorker, hasCameraPermission: () -> Boolean, onPickPhoto: () -> Unit, onOpenSettings: () -> Unit) {
    MaterialTheme(colorScheme = darkColorScheme()) {
        Surface(Modifier.fillMaxSize()) {
            val state by worker.state.collectAsStateWithLifecycle()
            var permission by remember { mutableStateOf(if (hasCameraPermission()) Permission.GRANTED else Permission.UNKNOWN) }
            val request = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
                permission = if (granted) Permission.GRANTED else Permission.DENIED
            }
            LaunchedEffect(Unit) {
                if (permission == Permission.UNKNOWN) request.launch(Manifest.permission.CAMERA)
            }

            Column(Modifier.fillMaxSize()) {
                Box(Modifier.fillMaxWidth().weight(1f).background(Color.Black), contentAlignment = Alignment.Center) {
                    val still = state.stillImage
                    when {
                        still != null -> Image(still.asImageBitmap(), contentDescription = "photo", modifier = Modifier.fillMaxSize(), contentScale = ContentScale.Fit)
                        permission == Permission.GRANTED -> CameraPreview(worker)
                        permission == Permission.DENIED -> Column(Modifier.padding(24.dp), horizontalAlignment = Alignment.CenterHorizontally) {
                            Text(stringResource(R.string.camera_denied))
                            Spacer(Modifier.height(12.dp))
                            Button(onClick = onOpenSettings) { Text("Open settings") }
                        }
                        else -> Text("Waiting for camera permission…")
                    }
                }
                ResultsPanel(state)
                SettingsPanel(state, worker, onPickPhoto)
            }
        }
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
        for (c in state.top) ScoreBar(c)
        if (state.top.isEmpty()) Text("…")
        Spacer(Modifier.height(6.dp))
        Text(
            "pre ${ms(state.preprocessMs)} ms · inference ${ms(state.inferenceMs)} ms · total ${ms(state.totalMs)} ms " +
                "(avg ${ms(state.avgTotalMs)}) · ${String.format(Locale.US, "%.1f", state.fps)} FPS",
            style = MaterialTheme.typography.bodySmall,
        )
        Text("backend: ${state.backend.ifEmpty { "–" }} · model: ${state.config.variant.title}", style = MaterialTheme.typography.bodySmall)
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
private fun SettingsPanel(state: UiState, worker: InferenceWorker, onPickPhoto: () -> Unit) {
    val cfg = state.config
    var threads by remember(cfg.threads) { mutableFloatStateOf(cfg.threads.toFloat()) }
    Column(Modifier.fillMaxWidth().padding(horizontal = 12.dp, vertical = 4.dp)) {
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp), verticalAlignment = Alignment.CenterVertically) {
            Text("Accelerator")
            for (a in AcceleratorChoice.values()) {
                FilterChip(selected = cfg.accelerator == a, onClick = { worker.configure(cfg.copy(accelerator = a)) }, label = { Text(a.name) })
            }
        }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp), verticalAlignment = Alignment.CenterVertically) {
            Text("Model")
            for (v in ModelVariant.values()) {
                FilterChip(
                    selected = cfg.variant == v,
                    enabled = v in state.installed,
                    onClick = { worker.configure(cfg.copy(variant = v)) },
                    label = { Text(v.title) },
                )
            }
        }
        Row(verticalAlignment = Alignment.CenterVertically) {
            Text("Threads ${threads.toInt()}", Modifier.width(96.dp))
            Slider(
                value = threads,
                onValueChange = { threads = it },
                onValueChangeFinished = { worker.configure(cfg.copy(threads = threads.toInt())) },
                valueRange = 1f..8f,
                steps = 6,
                enabled = cfg.accelerator == AcceleratorChoice.CPU,
                modifier = Modifier.weight(1f),
            )
        }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            OutlinedButton(onClick = onPickPhoto) { Text("Photo…") }
            if (state.stillImage != null) Button(onClick = { worker.classifyStill(null) }) { Text("Back to camera") }
        }
    }
}
