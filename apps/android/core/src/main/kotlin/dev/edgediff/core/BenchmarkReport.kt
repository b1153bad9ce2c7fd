package dev.edgediff.core

import org.json.JSONArray
import org.json.JSONObject
import java.time.Instant
import java.time.temporal.ChronoUnit

/** Latencies of one component over the measured runs, plus what the device says around them. */
data class ComponentBenchmark(
    val component: String,
    val latenciesMs: List<Double>,
    val computeUnits: String? = null,
    val loadMs: Double? = null,
    val firstInferenceMs: Double? = null,
    val warmup: Int? = null,
    val peakMemoryMb: Double? = null,
    val thermalStart: String? = null,
    val thermalEnd: String? = null,
    val settings: Map<String, Any> = emptyMap(),
) {
    val median: Double get() = BenchmarkReport.median(latenciesMs)
    val p90: Double get() = BenchmarkReport.p90(latenciesMs)
}

/**
 * The app's benchmark result in the format `edgediff profile --import FILE --tool app` reads
 * (edgediff/profile/parsers/app_report.py, `edgediff-app-benchmark/1`). Summary statistics are written beside
 * the raw latencies and computed the way the importer checks them (median; p90 by linear interpolation).
 */
class BenchmarkReport(
    val device: Map<String, Any>,
    val backend: String,
    val precision: String,
    val manifestSha256: String?,
    val results: List<ComponentBenchmark>,
    val appName: String = "edgediff-android",
    val appVersion: String = "0.1.0",
    val created: Instant = Instant.now(),
) {
    /** Refuses (`InvalidManifest`, as Swift) a report the importer would refuse: no device.model, no latencies. */
    init {
        if ((device["model"] as? String).isNullOrEmpty()) {
            throw BundleError.InvalidManifest("report device.model", "the device's model identifier (the importer needs it)")
        }
        if (results.isEmpty() || results.any { it.latenciesMs.isEmpty() }) {
            throw BundleError.InvalidManifest("report results", "at least one component with measured latencies")
        }
    }

    fun toJson(): JSONObject {
        val root = JSONObject()
        root.put("format", FORMAT)
        root.put("app", JSONObject().put("name", appName).put("version", appVersion))
        root.put("device", JSONObject(device as Map<*, *>))
        root.put("bundle", JSONObject().put("backend", backend).put("precision", precision).apply {
            manifestSha256?.let { put("manifest_sha256", it) }
        })
        root.put("created", created.truncatedTo(ChronoUnit.SECONDS).toString())
        val list = JSONArray()
        for (r in results) {
            val o = JSONObject().put("component", r.component)
            r.computeUnits?.let { o.put("compute_units", it) }
            r.loadMs?.let { o.put("load_ms", round3(it)) }
            r.firstInferenceMs?.let { o.put("first_inference_ms", round3(it)) }
            r.warmup?.let { o.put("warmup", it) }
            val lat = r.latenciesMs.map(::round3)
            o.put("latencies_ms", JSONArray(lat))
            if (lat.isNotEmpty()) {
                o.put("median_ms", median(lat)).put("p90_ms", p90(lat)).put("runs", lat.size)
            }
            r.peakMemoryMb?.let { o.put("peak_memory_mb", round3(it)) }
            if (r.thermalStart != null || r.thermalEnd != null) {
                o.put("thermal_state", JSONObject().apply {
                    r.thermalStart?.let { put("start", it) }
                    r.thermalEnd?.let { put("end", it) }
                })
            }
            if (r.settings.isNotEmpty()) o.put("settings", JSONObject(r.settings as Map<*, *>))
            list.put(o)
        }
        root.put("results", list)
        return root
    }

    fun write(file: java.io.File) {
        file.parentFile?.mkdirs()
        val tmp = java.io.File(file.path + ".partial")
        tmp.writeText(toJson().toString(1) + "\n")
        if (!tmp.renameTo(file)) {
            file.delete()
            tmp.renameTo(file)
        }
    }

    companion object {
        const val FORMAT = "edgediff-app-benchmark/1"

        private fun round3(v: Double) = Math.round(v * 1000.0) / 1000.0

        /** The median; 0 for no values (as Swift). */
        fun median(values: List<Double>): Double {
            if (values.isEmpty()) return 0.0
            val s = values.sorted()
            val n = s.size
            return if (n % 2 == 1) s[n / 2] else (s[n / 2 - 1] + s[n / 2]) / 2
        }

        /** The 90th percentile by linear interpolation (numpy's default); 0 for no values. */
        fun p90(values: List<Double>): Double {
            if (values.isEmpty()) return 0.0
            val s = values.sorted()
            val pos = 0.9 * (s.size - 1)
            val lo = pos.toInt()
            val hi = minOf(lo + 1, s.size - 1)
            return s[lo] + (s[hi] - s[lo]) * (pos - lo)
        }
    }
}

/**
 * The benchmark the app runs (headless from adb, or from its screen): `warmup` images, then `runs` images,
 * each timed per stage; a component's latencies are its per-run times (the UNet's are per call). Memory and
 * thermal state come from the platform through the probes (ActivityManager / PowerManager on Android).
 */
class BenchmarkRunner(
    private val pipeline: TextToImage,
    private val computeUnits: String,
    private val peakMemoryMb: () -> Double? = { null },
    private val thermalState: () -> String? = { null },
) {
    fun run(prompt: String, seed: Long, warmup: Int, runs: Int, steps: Int? = null, onProgress: (String) -> Unit = {}): List<ComponentBenchmark> {
        if (runs < 1 || warmup < 0) throw BundleError.InvalidManifest("benchmark", "runs >= 1 and warmup >= 0")
        val thermalStart = thermalState()
        var first: GenerationResult? = null
        for (i in 0 until warmup) {
            onProgress("warm-up ${i + 1}/$warmup")
            val r = pipeline.generate(prompt, seed, steps)
            if (first == null) first = r
        }
        val measured = (0 until runs).map { i ->
            onProgress("run ${i + 1}/$runs")
            pipeline.generate(prompt, seed, steps).also { if (first == null) first = it }
        }
        val thermalEnd = thermalState()
        val peak = peakMemoryMb()
        val settings = mapOf(
            "prompt" to prompt, "seed" to seed, "steps" to measured.first().steps, "guidance" to measured.first().guidance,
            "memory_strategy" to pipeline.memoryPlan.strategy.name,
        )
        fun result(component: String, load: Double?, firstMs: Double?, latencies: List<Double>) = ComponentBenchmark(
            component = component, latenciesMs = latencies, computeUnits = computeUnits, loadMs = load,
            firstInferenceMs = firstMs, warmup = warmup, peakMemoryMb = peak, thermalStart = thermalStart,
            thermalEnd = thermalEnd, settings = settings,
        )
        val f = first!!.timings
        val load = pipeline.componentLoadMs
        return listOf(
            result("text_encoder", load["text_encoder"], f.textEncoderMs, measured.map { it.timings.textEncoderMs }),
            result("unet", load["unet"], f.unetStepMs.first(), measured.flatMap { it.timings.unetStepMs }),
            result("vae_decoder", load["vae_decoder"], f.vaeDecoderMs, measured.map { it.timings.vaeDecoderMs }),
            result("pipeline", pipeline.loadMs, f.totalMs, measured.map { it.timings.totalMs }),
        )
    }
}
