package dev.edgediff.app

import android.content.Context
import android.content.Intent
import android.util.Log
import java.io.File

/**
 * The benchmark started from adb, without touching the screen:
 *
 *   adb shell am start -n dev.edgediff.app/.MainActivity --es bundle NAME --ei runs 10 [--ei warmup 2]
 *       [--es compute cpu|gpu|npu] [--es prompt TEXT] [--el seed 0] [--ei steps N] [--es report NAME.json]
 *
 * It writes files/reports/NAME.json (edgediff-app-benchmark/1, what `edgediff profile --import FILE --tool app`
 * reads) atomically, or files/reports/NAME.error.json with a named error; the host polls for either and pulls it.
 */
data class BenchmarkRequest(
    val bundle: String,
    val runs: Int,
    val warmup: Int,
    val unit: ComputeUnit,
    val prompt: String,
    val seed: Long,
    val steps: Int?,
    val reportName: String,
) {
    fun reportFile(context: Context): File = File(File(context.getExternalFilesDir(null), "reports"), reportName)

    fun errorFile(context: Context): File = File(File(context.getExternalFilesDir(null), "reports"), reportName.removeSuffix(".json") + ".error.json")

    companion object {
        private val SAFE_NAME = Regex("[A-Za-z0-9._-]{1,100}\\.json")

        /** The request in an intent, or null when the intent is an ordinary launch. */
        fun from(intent: Intent?): BenchmarkRequest? {
            val extras = intent?.extras ?: return null
            val bundle = extras.getString("bundle") ?: return null
            if (!extras.containsKey("runs")) return null
            val report = extras.getString("report") ?: "benchmark-$bundle.json"
            require(SAFE_NAME.matches(report)) { "report must be a file name like bench.json, got '$report'" }
            return BenchmarkRequest(
                bundle = bundle,
                runs = extras.getInt("runs").coerceIn(1, 1000),
                warmup = extras.getInt("warmup", 2).coerceIn(0, 100),
                unit = ComputeUnit.entries.firstOrNull { it.label == extras.getString("compute", "cpu") } ?: ComputeUnit.CPU,
                prompt = extras.getString("prompt") ?: "a red circle on a blue background",
                seed = extras.getLong("seed", 0L),
                steps = if (extras.containsKey("steps")) extras.getInt("steps") else null,
                reportName = report,
            )
        }
    }

    /** Runs on a background thread; never throws (a failure becomes the .error.json file). */
    fun run(context: Context, progress: (String) -> Unit) {
        reportFile(context).delete()
        errorFile(context).delete()
        try {
            LoadedBundle.open(context, bundle, unit).use { loaded ->
                val out = loaded.benchmark(context, prompt, seed, warmup, runs, steps, reportFile(context), progress)
                Log.i(TAG, "benchmark report written: ${out.path}")
                progress("wrote ${out.path}")
            }
        } catch (e: Throwable) {
            writeFailure(errorFile(context), e)
            Log.e(TAG, "benchmark failed: ${describeFailure(e)}", e)
            progress("failed: ${describeFailure(e).second}")
        }
    }
}
