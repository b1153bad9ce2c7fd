package dev.edgediff.app

import android.content.Context
import android.graphics.Bitmap
import android.util.Log
import dev.edgediff.core.BenchmarkReport
import dev.edgediff.core.BenchmarkRunner
import dev.edgediff.core.BundleError
import dev.edgediff.core.BundleManifest
import dev.edgediff.core.GenerationResult
import dev.edgediff.core.GoldenCheck
import dev.edgediff.core.GoldenFiles
import dev.edgediff.core.GoldenReport
import dev.edgediff.core.RgbImage
import dev.edgediff.core.SessionFactory
import dev.edgediff.core.TextToImage
import org.json.JSONObject
import java.io.File

const val TAG = "edgediff"

/** An opened bundle: manifest checked (every sha256), sessions created on the chosen compute unit. */
class LoadedBundle(val name: String, val manifest: BundleManifest, val unit: ComputeUnit, private val factory: SessionFactory) : AutoCloseable {
    val pipeline = TextToImage(manifest, factory)

    override fun close() {
        pipeline.close()
        (factory as? AutoCloseable)?.close()
    }

    companion object {
        fun open(context: Context, nameOrPath: String, unit: ComputeUnit): LoadedBundle {
            val dir = Bundles(context).resolve(nameOrPath)
            val manifest = BundleManifest.load(dir)
            manifest.checkMemoryBudget(DeviceProbes.memoryBudgetMb(context))
            if (manifest.backend == "onnxruntime" && unit != ComputeUnit.CPU) {
                Log.w(TAG, "ONNX Runtime bundles run on the CPU here; ignoring compute unit ${unit.label}")
            }
            return LoadedBundle(dir.name, manifest, unit, sessionFactoryFor(manifest.backend, unit))
        }
    }

    /** The bundle's own golden files (`edgediff bundle --app android` puts them in golden/), if any. */
    fun selfCheck(): GoldenReport? {
        val dir = File(manifest.root, "golden")
        if (!File(dir, "golden.json").isFile) return null
        val golden = GoldenFiles(dir)
        val result = pipeline.generate(golden.prompt, golden.seed, golden.steps, golden.guidance, golden.negativePrompt, keepIntermediates = true)
        return GoldenCheck.compare(golden, result, manifest.pipeline.scheduler.tables!!, pipeline.tokenizer)
    }

    /** The benchmark; writes `reportFile` (edgediff-app-benchmark/1) and returns it. */
    fun benchmark(context: Context, prompt: String, seed: Long, warmup: Int, runs: Int, steps: Int?, reportFile: File, progress: (String) -> Unit): File {
        val results = BenchmarkRunner(
            pipeline, unit.label, peakMemoryMb = { DeviceProbes.peakMemoryMb() }, thermalState = { DeviceProbes.thermalState(context) },
        ).run(prompt, seed, warmup, runs, steps, progress)
        BenchmarkReport(DeviceProbes.device(context), manifest.backend, manifest.precision, manifest.manifestSha256, results,
            appVersion = appVersion(context)).write(reportFile)
        return reportFile
    }
}

fun appVersion(context: Context): String =
    runCatching { context.packageManager.getPackageInfo(context.packageName, 0).versionName }.getOrNull() ?: "0.1.0"

fun RgbImage.toBitmap(): Bitmap {
    val colors = IntArray(width * height) { i ->
        val r = pixels[i * 3].toInt() and 0xff
        val g = pixels[i * 3 + 1].toInt() and 0xff
        val b = pixels[i * 3 + 2].toInt() and 0xff
        (0xff shl 24) or (r shl 16) or (g shl 8) or b
    }
    return Bitmap.createBitmap(colors, width, height, Bitmap.Config.ARGB_8888)
}

fun GenerationResult.stageLines(): List<String> {
    val t = timings
    return listOf(
        "load %.0f ms".format(t.loadMs),
        "tokenize %.1f ms".format(t.tokenizeMs),
        "text encoder %.1f ms".format(t.textEncoderMs),
        "unet %d calls, %.0f ms (%.1f ms/call)".format(t.unetStepMs.size, t.unetMs, t.unetMs / maxOf(1, t.unetStepMs.size)),
        "scheduler %.1f ms".format(t.schedulerMs),
        "vae decoder %.1f ms".format(t.vaeDecoderMs),
        "total %.0f ms".format(t.totalMs),
    )
}

/** A bundle error (or anything else) as the message the app shows and the headless run writes. */
fun describeFailure(e: Throwable): Pair<String, String> = when (e) {
    is BundleError -> e.code to (e.message ?: e.code)
    is OutOfMemoryError -> "out_of_memory" to "the phone ran out of memory loading this bundle; use a smaller precision or model"
    else -> "unexpected" to "${e::class.java.simpleName}: ${e.message}"
}

fun writeFailure(file: File, e: Throwable) {
    val (code, message) = describeFailure(e)
    file.parentFile?.mkdirs()
    file.writeText(JSONObject().put("error", code).put("message", message).toString(1) + "\n")
}
