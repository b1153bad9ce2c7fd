package dev.edgediff.app

import android.content.Intent
import android.graphics.Bitmap
import android.os.Bundle
import android.util.Log
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.compose.foundation.Image
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.size
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.text.KeyboardOptions
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.Card
import androidx.compose.material3.CardDefaults
import androidx.compose.material3.FilterChip
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Surface
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.rememberCoroutineScope
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.FilterQuality
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.unit.dp
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.File
import kotlin.concurrent.thread

/**
 * One screen: pick a bundle (pushed with adb or in the APK's assets), a prompt, steps, seed and compute unit;
 * generate and see the image with per-stage timings; run the bundle's golden self-check or the benchmark.
 * Started with `--es bundle NAME --ei runs N` it runs the benchmark headless instead (HeadlessBenchmark.kt).
 */
class MainActivity : ComponentActivity() {
    private val status = mutableStateOf("")

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        handleHeadless(intent)
        setContent { MaterialTheme { Surface(Modifier.fillMaxSize()) { Screen(status.value) } } }
    }

    override fun onNewIntent(intent: Intent) {
        super.onNewIntent(intent)
        handleHeadless(intent)
    }

    private fun handleHeadless(intent: Intent?) {
        val request = try {
            BenchmarkRequest.from(intent) ?: return
        } catch (e: IllegalArgumentException) {
            status.value = "benchmark request refused: ${e.message}"
            Log.e(TAG, status.value)
            return
        }
        status.value = "benchmark ${request.bundle}: starting"
        thread(name = "edgediff-benchmark") {
            request.run(applicationContext) { line -> runOnUiThread { status.value = "benchmark ${request.bundle}: $line" } }
        }
    }
}

@Composable
private fun Screen(headlessStatus: String) {
    val context = androidx.compose.ui.platform.LocalContext.current
    val scope = rememberCoroutineScope()
    val bundles = remember { Bundles(context) }
    var names by remember { mutableStateOf(bundles.list()) }
    var selected by remember { mutableStateOf(names.firstOrNull() ?: "") }
    var unit by remember { mutableStateOf(ComputeUnit.CPU) }
    var prompt by remember { mutableStateOf("a red circle on a blue background") }
    var steps by remember { mutableStateOf("") }
    var seed by remember { mutableStateOf("0") }
    var busy by remember { mutableStateOf(false) }
    var image by remember { mutableStateOf<Bitmap?>(null) }
    var lines by remember { mutableStateOf(listOf<String>()) }
    var error by remember { mutableStateOf<String?>(null) }
    var loaded by remember { mutableStateOf<LoadedBundle?>(null) }

    /** Open (or reuse) the selected bundle on the chosen unit, run `work` off the main thread, show failures. */
    fun runTask(what: String, work: (LoadedBundle) -> List<String>) {
        busy = true
        error = null
        lines = listOf("$what…")
        scope.launch {
            val outcome = withContext(Dispatchers.Default) {
                runCatching {
                    val current = loaded?.takeIf { it.name == File(selected).name && it.unit == unit }
                        ?: LoadedBundle.open(context, selected, unit).also { loaded?.close(); loaded = it }
                    work(current)
                }
            }
            outcome.onSuccess { lines = it }.onFailure { e ->
                val (code, message) = describeFailure(e)
                error = "$code: $message"
                lines = emptyList()
            }
            busy = false
        }
    }

    Column(Modifier.padding(16.dp).verticalScroll(rememberScrollState()), verticalArrangement = Arrangement.spacedBy(8.dp)) {
        Text("edgediff", style = MaterialTheme.typography.headlineSmall)
        if (headlessStatus.isNotEmpty()) Text(headlessStatus, style = MaterialTheme.typography.bodySmall)
        if (names.isEmpty()) {
            Text("No bundle found. Push one: adb push BUNDLE ${bundles.pushedRoot.path}/NAME (see apps/android/README.md).")
        }
        Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
            names.forEach { name -> FilterChip(selected = name == selected, onClick = { selected = name }, label = { Text(name) }) }
        }
        Button(onClick = { names = bundles.list() }, enabled = !busy) { Text("Refresh bundles") }
        Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
            ComputeUnit.entries.forEach { u -> FilterChip(selected = u == unit, onClick = { unit = u }, label = { Text(u.label.uppercase()) }) }
        }
        OutlinedTextField(prompt, { prompt = it }, label = { Text("prompt") }, modifier = Modifier.fillMaxWidth())
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            OutlinedTextField(steps, { steps = it.filter(Char::isDigit) }, label = { Text("steps (bundle's)") },
                keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Number), modifier = Modifier.weight(1f))
            OutlinedTextField(seed, { seed = it.filter(Char::isDigit) }, label = { Text("seed") },
                keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Number), modifier = Modifier.weight(1f))
        }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Button(enabled = !busy && selected.isNotEmpty(), onClick = {
                runTask("generating") { b ->
                    val r = b.pipeline.generate(prompt, seed.toLongOrNull() ?: 0L, steps.toIntOrNull())
                    image = r.image.toBitmap()
                    listOf("${r.steps} steps, ${r.scheduler}, guidance ${r.guidance}") + r.stageLines()
                }
            }) { Text("Generate") }
            Button(enabled = !busy && selected.isNotEmpty(), onClick = {
                runTask("self-check against the bundle's golden files") { b ->
                    b.selfCheck()?.describe()?.lines() ?: listOf("this bundle carries no golden/ folder (edgediff bundle --app android adds one)")
                }
            }) { Text("Self-check") }
            Button(enabled = !busy && selected.isNotEmpty(), onClick = {
                runTask("benchmark: 1 warm-up, 5 runs") { b ->
                    val file = File(File(context.getExternalFilesDir(null), "reports"), "benchmark-${b.name}.json")
                    b.benchmark(context, prompt, seed.toLongOrNull() ?: 0L, 1, 5, steps.toIntOrNull(), file) {}
                    listOf("report: ${file.path}") + file.readText().lines().filter { "median_ms" in it || "component" in it }.map { it.trim() }
                }
            }) { Text("Benchmark") }
        }
        error?.let {
            Card(colors = CardDefaults.cardColors(containerColor = MaterialTheme.colorScheme.errorContainer)) {
                Text(it, Modifier.padding(12.dp))
            }
        }
        image?.let { Image(it.asImageBitmap(), contentDescription = "generated image", filterQuality = FilterQuality.None, modifier = Modifier.size(320.dp)) }
        lines.forEach { Text(it, style = MaterialTheme.typography.bodySmall) }
    }
}
