package dev.edgediff.core

/**
 * The schedulers a bundle carries, as the per-step coefficient tables edgediff/runtime/schedulers.py writes
 * (`edgediff-scheduler-tables/1`): DDIM (any spacing, trailing included), Euler, DPM-Solver++ 2M, LCM and PNDM
 * all reduce to multiply-adds on the latent, so the device never re-derives diffusers' per-class math.
 *
 * Arithmetic mirrors the Python `TableScheduler` operation for operation in float32 (numpy casts a Python
 * float coefficient to float32 before multiplying a float32 array; every product and sum rounds to float32,
 * nothing is fused), so a step gives the same bits as the host for the same inputs.
 */
data class StepCoefficients(
    val timestep: Double,
    val inputScale: Double,
    val convert: DoubleArray,
    val combine: DoubleArray,
    val push: Boolean,
    val update: DoubleArray,
    val x0: DoubleArray?,
    val baseIsSaved: Boolean,
    val saveSample: Boolean,
)

data class SchedulerTables(
    val className: String,
    val predictionType: String,
    val numInferenceSteps: Int,
    val initNoiseSigma: Double,
    val timesteps: DoubleArray,
    val historySize: Int,
    val clipRange: Double?,
    val needsNoise: Boolean,
    val steps: List<StepCoefficients>,
) {
    companion object {
        const val FORMAT = "edgediff-scheduler-tables/1"

        /** The diffusers classes the tables can express (edgediff/runtime/schedulers.py DEFAULTS). */
        val KNOWN_CLASSES = listOf(
            "DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "LCMScheduler", "PNDMScheduler",
            "EulerAncestralDiscreteScheduler", "UniPCMultistepScheduler", "TCDScheduler", "HeunDiscreteScheduler",
            "DEISMultistepScheduler", "DPMSolverSinglestepScheduler",
        )

        internal fun parse(node: JsonNode): SchedulerTables {
            val format = node.raw("format") as? String
            val name = node.raw("class_name") as? String ?: "(unnamed)"
            if (format != FORMAT) {
                throw BundleError.UnsupportedScheduler(name, "its tables have format ${format ?: "(none)"}, this app reads $FORMAT")
            }
            if (name !in KNOWN_CLASSES) {
                throw BundleError.UnsupportedScheduler(name, "not one of ${KNOWN_CLASSES.joinToString()}")
            }
            val rows = node.array("steps").nodes()
            if (rows.isEmpty()) throw BundleError.InvalidManifest("${node.path}.steps", "a non-empty list of step rows")
            val steps = rows.map { row ->
                val base = row.optString("base") ?: "sample"
                if (base != "sample" && base != "saved") throw BundleError.InvalidManifest("${row.path}.base", "'sample' or 'saved'")
                /** A list of finite numbers of a size in `sizes`; anything else names the whole field, as Swift. */
                fun numbers(field: String, sizes: IntRange, expected: String): DoubleArray {
                    val items = row.array(field)
                    val values = DoubleArray(items.size) { JsonNode.asDouble(items.raw(it)) ?: Double.NaN }
                    if (values.any { it.isNaN() } || values.size !in sizes) throw BundleError.InvalidManifest("${row.path}.$field", expected)
                    return values
                }
                val x0 = if (row.has("x0")) numbers("x0", 2..2, "2 numbers or null") else null
                val convert = numbers("convert", 2..2, "2 numbers")
                val combine = numbers("combine", 1..64, "at least 1 number")
                val update = numbers("update", 4..4, "4 numbers")
                StepCoefficients(
                    timestep = row.double("timestep"), inputScale = row.double("input_scale"), convert = convert,
                    combine = combine, push = row.bool("push"), update = update, x0 = x0, baseIsSaved = base == "saved",
                    saveSample = row.optBool("save_sample") ?: false,
                )
            }
            val n = node.optCount("num_inference_steps")?.takeIf { it >= 1 }
                ?: throw BundleError.InvalidManifest("${node.path}.num_inference_steps", "a positive integer")
            val listed = node.array("timesteps")
            val timesteps = DoubleArray(listed.size) { JsonNode.asDouble(listed.raw(it)) ?: Double.NaN }
            if (timesteps.size != steps.size || steps.indices.any { timesteps[it] != steps[it].timestep }) {
                throw BundleError.InvalidManifest("${node.path}.timesteps", "the timesteps of the step rows, in order")
            }
            val history = node.optCount("history_size")?.takeIf { it <= 8 }
                ?: throw BundleError.InvalidManifest("${node.path}.history_size", "an integer in 0..8")
            return SchedulerTables(
                className = name, predictionType = node.optString("prediction_type") ?: "epsilon", numInferenceSteps = n,
                initNoiseSigma = node.double("init_noise_sigma"), timesteps = timesteps, historySize = history,
                clipRange = node.optDouble("clip_range"), needsNoise = node.optBool("needs_noise") ?: false, steps = steps,
            )
        }

        /** Tables from a standalone JSON file (the golden files' scheduler_tables.json). */
        fun parseFile(file: java.io.File): SchedulerTables {
            if (!file.isFile) throw BundleError.MissingFile(file.path)
            return parse(JsonNode.parse(file.readText(), file.name).root)
        }
    }
}

/**
 * Runs a scheduler from its tables alone. Call `reset()` before each image; then for each step i:
 * `scaleModelInput(x, i)`, run the model, `x = step(modelOutput, i, x, noise)` (noise only where
 * `stepNeedsNoise(i)`: LCM and SDE solvers draw it from the seed's generator, in step order).
 */
class TableScheduler(val tables: SchedulerTables) {
    val className: String get() = tables.className
    val steps: List<StepCoefficients> get() = tables.steps
    val timesteps: FloatArray = FloatArray(tables.steps.size) { tables.steps[it].timestep.toFloat() }
    val initNoiseSigma: Double get() = tables.initNoiseSigma
    val size: Int get() = tables.steps.size

    private val history = ArrayList<FloatArray>()
    private var saved: FloatArray? = null

    fun reset() {
        history.clear()
        saved = null
    }

    fun stepNeedsNoise(index: Int): Boolean = steps[index].update[3] != 0.0

    fun scaleModelInput(sample: FloatArray, index: Int): FloatArray {
        val scale = steps[index].inputScale
        return if (scale == 1.0) sample else scaled(scale, sample)
    }

    fun step(modelOutput: FloatArray, index: Int, sample: FloatArray, noise: FloatArray? = null): FloatArray {
        if (index !in steps.indices) throw BundleError.UnsupportedScheduler(className, "step $index is outside its $size steps")
        if (modelOutput.size != sample.size) {
            throw BundleError.InvalidTensor("model output", "${modelOutput.size} values for a latent of ${sample.size}")
        }
        val row = steps[index]
        val base = if (row.baseIsSaved) {
            saved ?: throw BundleError.UnsupportedScheduler(className, "step $index restarts from a saved sample but none was saved; step in order from reset()")
        } else {
            sample
        }
        if (row.saveSample) saved = sample
        val d = axpby(row.convert[0], base, row.convert[1], modelOutput)
        var combined = if (row.combine[0] != 1.0) scaled(row.combine[0], d) else d
        for (k in 1 until row.combine.size) {
            if (k > history.size) {
                throw BundleError.UnsupportedScheduler(className, "step $index needs $k earlier outputs; step in order from reset()")
            }
            val w = row.combine[k].toFloat()
            val h = history[history.size - k]
            combined = FloatArray(combined.size) { combined[it] + w * h[it] }
        }
        if (row.push) {
            history.add(d)
            if (tables.historySize > 0) {
                while (history.size > tables.historySize) history.removeAt(0)
            } else {
                history.clear()
            }
        }
        var out = axpby(row.update[0], base, row.update[1], combined)
        if (row.x0 != null) {
            var x0 = axpby(row.x0[0], base, row.x0[1], modelOutput)
            tables.clipRange?.let { r ->
                val lo = (-r).toFloat()
                val hi = r.toFloat()
                x0 = FloatArray(x0.size) { x0[it].coerceIn(lo, hi) }
            }
            val u2 = row.update[2].toFloat()
            val prev = out
            out = FloatArray(prev.size) { prev[it] + u2 * x0[it] }
        }
        if (row.update[3] != 0.0) {
            val n = noise ?: throw BundleError.UnsupportedScheduler(className, "step $index injects noise; pass a standard-normal draw")
            if (n.size != out.size) throw BundleError.InvalidTensor("step noise", "${n.size} values for a latent of ${out.size}")
            val u3 = row.update[3].toFloat()
            val prev = out
            out = FloatArray(prev.size) { prev[it] + u3 * n[it] }
        }
        return out
    }

    private fun scaled(a: Double, x: FloatArray): FloatArray {
        val af = a.toFloat()
        return FloatArray(x.size) { af * x[it] }
    }

    /** a*x + b*y in float32, skipping a zero term (so 0 * inf never appears), like the Python `_axpby`. */
    private fun axpby(a: Double, x: FloatArray, b: Double, y: FloatArray): FloatArray {
        if (a == 0.0) return scaled(b, y)
        if (b == 0.0) return scaled(a, x)
        val af = a.toFloat()
        val bf = b.toFloat()
        return FloatArray(x.size) { af * x[it] + bf * y[it] }
    }
}
