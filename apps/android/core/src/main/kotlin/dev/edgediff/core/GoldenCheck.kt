package dev.edgediff.core

import java.io.File
import kotlin.math.abs
import kotlin.math.log10
import kotlin.math.max
import kotlin.math.sqrt

/** One tensor of a golden folder as golden.json describes it. */
data class GoldenTensorEntry(val name: String, val file: String, val dtype: String, val shape: IntArray, val sha256: String)

/**
 * The output of `edgediff bundle-golden` (format edgediff-golden/1): the prompt, seed and settings of one run,
 * token ids (plus tokenizer edge cases), the scheduler tables, and the tensors at each stage boundary; each
 * tensor file's sha256 is checked when it is read.
 */
class GoldenFiles(val dir: File) {
    val prompt: String
    val negativePrompt: String
    val seed: Long
    val steps: Int
    val guidance: Double
    val scheduler: String
    val latentShape: IntArray
    val inputIds: IntArray
    val negativeInputIds: IntArray?
    val tokenizerCases: List<Pair<String, IntArray>>
    val tensors: Map<String, GoldenTensorEntry>
    /** The image size of this run (`size`, [height, width]); null in golden files of one-size bundles. */
    val size: ImageSize?
    /** A bundle with several sizes: the golden folder of each other size (`sizes`, runtime/golden_sizes.py). */
    val otherSizes: Map<ImageSize, String>
    private val tablesFile: String

    init {
        val file = File(dir, "golden.json")
        if (!file.isFile) throw BundleError.MissingFile(file.path)
        val json = JsonNode.parse(file.readText(), "golden.json").root
        val format = json.optString("format")
        if (format != FORMAT) throw BundleError.UnsupportedFormat(format)
        prompt = json.optString("prompt") ?: ""
        negativePrompt = json.optString("negative_prompt") ?: ""
        seed = json.optCount("seed")?.toLong() ?: throw BundleError.InvalidManifest("golden.json: seed", "a non-negative integer")
        steps = json.optCount("steps") ?: throw BundleError.InvalidManifest("golden.json: steps", "a non-negative integer")
        guidance = json.double("guidance")
        scheduler = json.string("scheduler")
        latentShape = json.array("latent_shape").ints()
        val tokens = json.node("tokens")
        inputIds = tokens.array("input_ids").ints()
        negativeInputIds = tokens.optArray("negative_input_ids")?.ints()
        tokenizerCases = tokens.array("cases").nodes().map { (it.optString("text") ?: "") to it.array("ids").ints() }
        tablesFile = json.string("scheduler_tables")
        size = json.optArray("size")?.ints()?.let { pair ->
            if (pair.size != 2 || pair.any { it < 8 }) throw BundleError.InvalidManifest("golden.json: size", "[height, width] in pixels")
            ImageSize(pair[0], pair[1])
        }
        otherSizes = (json.optArray("sizes")?.nodes() ?: emptyList()).associate { e ->
            val pair = e.array("size").ints()
            if (pair.size != 2 || pair.any { it < 8 }) throw BundleError.InvalidManifest("golden.json: ${e.path}.size", "[height, width] in pixels")
            ImageSize(pair[0], pair[1]) to e.string("golden")
        }
        val t = json.node("tensors")
        tensors = t.keys().associateWith { name ->
            val e = t.node(name)
            GoldenTensorEntry(name, e.string("file"), e.string("dtype"), e.array("shape").ints(), e.string("sha256"))
        }
    }

    val schedulerTables: SchedulerTables by lazy { SchedulerTables.parseFile(safeFile(tablesFile)) }

    fun has(name: String) = name in tensors

    /** The golden files of the run at `size`: this folder for its own size, else the one `sizes` names for it. */
    fun atSize(size: ImageSize): GoldenFiles {
        if (size == this.size || (this.size == null && otherSizes.isEmpty())) return this
        val rel = otherSizes[size] ?: throw BundleError.UnsupportedSize(
            size.name, "these golden files cover ${ImageSize.describe(listOfNotNull(this.size) + otherSizes.keys)}")
        return GoldenFiles(safeFile(rel))
    }

    private fun safeFile(rel: String): File {
        val f = File(dir, rel).canonicalFile
        if (!f.path.startsWith(dir.canonicalPath + File.separator)) throw BundleError.PathOutsideBundle(rel)
        return f
    }

    private fun entry(name: String) = tensors[name] ?: throw BundleError.InvalidTensor(name, "not in golden.json")

    private fun checkedFile(e: GoldenTensorEntry): File {
        val f = safeFile("tensors/${e.file}")
        if (!f.isFile) throw BundleError.MissingFile(f.path)
        val actual = BundleManifest.sha256File(f)
        if (actual != e.sha256) throw BundleError.ChecksumMismatch("tensors/${e.file}", e.sha256, actual)
        return f
    }

    fun floatTensor(name: String): FloatTensor {
        val e = entry(name)
        if (e.dtype != "float32") throw BundleError.InvalidTensor(name, "dtype ${e.dtype}, expected float32")
        return Tensor.readF32(checkedFile(e), e.shape, name)
    }

    fun intTensor(name: String): IntTensor {
        val e = entry(name)
        if (e.dtype != "int32") throw BundleError.InvalidTensor(name, "dtype ${e.dtype}, expected int32")
        return Tensor.readI32(checkedFile(e), e.shape, name)
    }

    companion object {
        const val FORMAT = "edgediff-golden/1"

        fun stepName(kind: String, i: Int) = "%s_%03d".format(kind, i)
    }
}

/** One compared stage: `value` of `metric` against `limit` (max_abs: <= limit; psnr_db: >= limit). */
data class StageCheck(val stage: String, val passed: Boolean, val metric: String, val value: Double, val limit: Double, val detail: String = "") {
    override fun toString() = "%-28s %s  %s=%.4g (limit %.4g)%s".format(stage, if (passed) "ok   " else "DRIFT", metric, value, limit, if (detail.isEmpty()) "" else "  $detail")
}

class GoldenReport(val checks: List<StageCheck>) {
    val passed: Boolean get() = checks.all { it.passed }

    /** The first stage, in pipeline order, that left its tolerance: where to look. */
    val firstDrift: StageCheck? get() = checks.firstOrNull { !it.passed }

    fun describe(): String = buildString {
        checks.forEach { appendLine(it) }
        append(firstDrift?.let { "drift starts at ${it.stage}" } ?: "all ${checks.size} stages within tolerance")
    }
}

/**
 * Tolerances per stage; the defaults are for a float32 bundle on the runtime the golden files came from. An fp16
 * bundle on a phone's accelerator needs looser ones (`GoldenTolerances.device`, the same figures as Swift's).
 */
data class GoldenTolerances(
    val textEmbedsMaxAbs: Double = 1e-4,
    val timestepCondMaxAbs: Double = 1e-6,
    val noisePredMaxAbs: Double = 1e-3,
    val latentsMaxAbs: Double = 1e-3,
    val decodedPsnrDb: Double = 40.0,
    val imagePsnrDb: Double = 40.0,
) {
    companion object {
        /** For fp16 weights and activations on an NPU / GPU: stages agree to fp16 rounding, images to ~30 dB. */
        val device = GoldenTolerances(
            textEmbedsMaxAbs = 5e-2, noisePredMaxAbs = 5e-2, latentsMaxAbs = 5e-2, decodedPsnrDb = 30.0, imagePsnrDb = 30.0,
        )
    }
}

/**
 * Compares one run (with intermediates kept) against golden files and names the stage that drifted: token ids
 * (exact), scheduler tables (exact), initial noise (bit-exact: the seed convention), text embeddings, guidance
 * embedding, every step's noise prediction and latents, the decoded tensor and the 8-bit image (PSNR).
 */
object GoldenCheck {
    fun compare(
        golden: GoldenFiles,
        result: GenerationResult,
        tables: SchedulerTables,
        tokenizer: ClipTokenizer? = null,
        tol: GoldenTolerances = GoldenTolerances(),
    ): GoldenReport {
        val run = result.intermediates ?: throw BundleError.InvalidTensor("intermediates", "generate with keepIntermediates = true first")
        val checks = ArrayList<StageCheck>()
        checks += exact("tokens.input_ids", run.inputIds, golden.inputIds)
        if (golden.negativeInputIds != null || run.uncondInputIds != null) {
            checks += exact("tokens.negative_input_ids", run.uncondInputIds ?: IntArray(0), golden.negativeInputIds ?: IntArray(0))
        }
        tokenizer?.let { tok ->
            val bad = golden.tokenizerCases.filter { (text, ids) -> !tok.encode(text).contentEquals(ids) }
            checks += StageCheck("tokens.cases", bad.isEmpty(), "mismatched_cases", bad.size.toDouble(), 0.0,
                bad.firstOrNull()?.let { "first: '${it.first.take(40)}'" } ?: "")
        }
        checks += compareTables(tables, golden.schedulerTables)
        checks += maxAbs("initial_noise", run.initialNoise, golden.floatTensor("initial_noise").data, 0.0)
        checks += maxAbs("text_encoder.prompt_embeds", run.promptEmbeds?.data, golden.floatTensor("prompt_embeds").data, tol.textEmbedsMaxAbs)
        if (golden.has("negative_prompt_embeds")) {
            checks += maxAbs("text_encoder.negative_embeds", run.negativePromptEmbeds?.data, golden.floatTensor("negative_prompt_embeds").data, tol.textEmbedsMaxAbs)
        }
        if (golden.has("timestep_cond")) {
            checks += maxAbs("timestep_cond", run.timestepCond, golden.floatTensor("timestep_cond").data, tol.timestepCondMaxAbs)
        }
        for (i in 0 until golden.steps) {
            val predName = GoldenFiles.stepName("noise_pred_step", i)
            if (golden.has(predName)) {
                checks += maxAbs("unet.step_%03d".format(i), run.noisePredPerStep.getOrNull(i), golden.floatTensor(predName).data, tol.noisePredMaxAbs)
            }
            checks += maxAbs("latents.step_%03d".format(i), run.latentsPerStep.getOrNull(i),
                golden.floatTensor(GoldenFiles.stepName("latents_after_step", i)).data, tol.latentsMaxAbs)
        }
        val goldenDecoded = golden.floatTensor("decoded")
        val decoded = run.decoded
        checks += psnrCheck("vae_decoder.decoded", decoded?.data, goldenDecoded.data, 2.0, tol.decodedPsnrDb)
        val goldenImage = TextToImage.latentsToImage(goldenDecoded)
        checks += psnrCheck("image", result.image.pixels.toFloats(), goldenImage.pixels.toFloats(), 255.0, tol.imagePsnrDb)
        return GoldenReport(checks)
    }

    fun compareTables(actual: SchedulerTables, expected: SchedulerTables): StageCheck {
        val problems = ArrayList<String>()
        if (actual.className != expected.className) problems += "class ${actual.className} vs ${expected.className}"
        if (actual.steps.size != expected.steps.size) problems += "${actual.steps.size} vs ${expected.steps.size} steps"
        var worst = 0.0
        for ((a, e) in actual.steps.zip(expected.steps)) {
            val pairs = listOf(
                doubleArrayOf(a.timestep, a.inputScale) to doubleArrayOf(e.timestep, e.inputScale),
                a.convert to e.convert, a.combine to e.combine, a.update to e.update,
                (a.x0 ?: DoubleArray(0)) to (e.x0 ?: DoubleArray(0)),
            )
            for ((x, y) in pairs) {
                if (x.size != y.size) { problems += "row shapes differ at timestep ${e.timestep}"; continue }
                for (k in x.indices) worst = max(worst, abs(x[k] - y[k]) / max(1.0, abs(y[k])))
            }
            if (a.push != e.push || a.baseIsSaved != e.baseIsSaved || a.saveSample != e.saveSample) problems += "flags differ at timestep ${e.timestep}"
        }
        return StageCheck("scheduler_tables", problems.isEmpty() && worst <= 1e-12, "max_rel", worst, 1e-12, problems.joinToString("; "))
    }

    private fun exact(stage: String, actual: IntArray, expected: IntArray): StageCheck {
        val firstDiff = (0 until max(actual.size, expected.size)).firstOrNull { actual.getOrNull(it) != expected.getOrNull(it) }
        return StageCheck(stage, firstDiff == null, "mismatches", (0 until max(actual.size, expected.size)).count { actual.getOrNull(it) != expected.getOrNull(it) }.toDouble(), 0.0,
            firstDiff?.let { "first at index $it: ${actual.getOrNull(it)} vs ${expected.getOrNull(it)}" } ?: "")
    }

    /** The largest absolute difference; a NaN anywhere, or arrays of different sizes, count as infinitely different. */
    fun maxAbsDiff(a: FloatArray, b: FloatArray): Double {
        if (a.size != b.size) return Double.POSITIVE_INFINITY
        var worst = 0.0
        for (i in a.indices) {
            val d = abs(a[i].toDouble() - b[i].toDouble())
            if (d.isNaN()) return Double.POSITIVE_INFINITY
            worst = max(worst, d)
        }
        return worst
    }

    private fun maxAbs(stage: String, actual: FloatArray?, expected: FloatArray, limit: Double): StageCheck {
        if (actual == null || actual.size != expected.size) {
            return StageCheck(stage, false, "max_abs", Double.POSITIVE_INFINITY, limit, "missing or ${actual?.size} values vs ${expected.size}")
        }
        val d = maxAbsDiff(actual, expected)
        return StageCheck(stage, d <= limit, "max_abs", d, limit)
    }

    /** PSNR in dB for data spanning `range`; identical data gives +infinity, empty, unequal or NaN data -infinity. */
    fun psnr(a: FloatArray, b: FloatArray, range: Double): Double {
        if (a.isEmpty() || a.size != b.size) return Double.NEGATIVE_INFINITY
        var sum = 0.0
        for (i in a.indices) {
            val d = a[i].toDouble() - b[i].toDouble()
            sum += d * d
        }
        val mse = sum / a.size
        if (mse.isNaN()) return Double.NEGATIVE_INFINITY
        return if (mse == 0.0) Double.POSITIVE_INFINITY else 20 * log10(range / sqrt(mse))
    }

    private fun psnrCheck(stage: String, actual: FloatArray?, expected: FloatArray, range: Double, limit: Double): StageCheck {
        if (actual == null || actual.size != expected.size) {
            return StageCheck(stage, false, "psnr_db", Double.NEGATIVE_INFINITY, limit, "missing or ${actual?.size} values vs ${expected.size}")
        }
        val p = psnr(actual, expected, range)
        return StageCheck(stage, p >= limit, "psnr_db", p, limit)
    }

    private fun ByteArray.toFloats() = FloatArray(size) { (this[it].toInt() and 0xff).toFloat() }
}
