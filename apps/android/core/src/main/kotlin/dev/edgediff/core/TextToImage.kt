package dev.edgediff.core

/** Wall-clock milliseconds per stage of one image; `unetStepMs` has one entry per (guided) UNet evaluation. */
class StageTimings {
    var loadMs = 0.0
    var tokenizeMs = 0.0
    var textEncoderMs = 0.0
    val unetStepMs = ArrayList<Double>()
    var schedulerMs = 0.0
    var vaeDecoderMs = 0.0
    var totalMs = 0.0

    val unetMs: Double get() = unetStepMs.sum()

    /** The same keys as the Python summary (and Swift's), so reports compare side by side. */
    fun summary(): Map<String, Double> {
        val sorted = unetStepMs.sorted()
        val median = when {
            sorted.isEmpty() -> 0.0
            sorted.size % 2 == 1 -> sorted[sorted.size / 2]
            else -> (sorted[sorted.size / 2 - 1] + sorted[sorted.size / 2]) / 2
        }
        return linkedMapOf(
            "load_ms" to loadMs, "tokenize_ms" to tokenizeMs, "text_encoder_ms" to textEncoderMs, "unet_total_ms" to unetMs,
            "unet_calls" to unetStepMs.size.toDouble(), "unet_step_median_ms" to median, "unet_step_min_ms" to (sorted.firstOrNull() ?: 0.0),
            "unet_step_max_ms" to (sorted.lastOrNull() ?: 0.0), "scheduler_ms" to schedulerMs, "vae_decoder_ms" to vaeDecoderMs, "total_ms" to totalMs,
        )
    }

    fun describe(): String = "tokenize %.1f ms | text encoder %.1f ms | unet %d calls, %.0f ms | scheduler %.1f ms | vae decoder %.1f ms | total %.0f ms"
        .format(tokenizeMs, textEncoderMs, unetStepMs.size, unetMs, schedulerMs, vaeDecoderMs, totalMs)
}

/** An 8-bit RGB image, row-major HxWx3 (what diffusers' image processor returns). */
class RgbImage(val width: Int, val height: Int, val pixels: ByteArray) {
    fun value(y: Int, x: Int, c: Int): Int = pixels[(y * width + x) * 3 + c].toInt() and 0xff
}

/** Every stage boundary of one run, kept for the golden self-check (GoldenCheck). */
class Intermediates {
    var inputIds: IntArray = IntArray(0)
    var uncondInputIds: IntArray? = null
    var promptEmbeds: FloatTensor? = null
    var negativePromptEmbeds: FloatTensor? = null
    var initialNoise: FloatArray = FloatArray(0)
    var initialLatents: FloatArray = FloatArray(0)
    var timestepCond: FloatArray? = null
    val noisePredPerStep = ArrayList<FloatArray>()
    val stepNoise = ArrayList<FloatArray?>()
    val latentsPerStep = ArrayList<FloatArray>()
    var decoded: FloatTensor? = null
}

class GenerationResult(
    val image: RgbImage,
    val seed: Long,
    val steps: Int,
    val guidance: Double,
    val scheduler: String,
    val timings: StageTimings,
    val intermediates: Intermediates?,
)

/**
 * Text -> image from a bundle over any InferenceSession, mirroring edgediff/runtime/pipeline.py
 * `BundlePipeline.generate` operation for operation (so the image matches the host at the same seed):
 * tokenize; encode the prompt (and the negative prompt when guidance is batched or run twice); initial latent
 * = numpy's float32 standard normal for `seed` * init_noise_sigma; per step: UNet (uncond + cond in one batch
 * of 2, two calls, or one call with the guidance scale embedded as `timestep_cond`), guidance mix, table step
 * (noise drawn from the same generator for LCM); VAE decode; round to uint8 as diffusers does.
 *
 * The memory plan (MemoryPlan; by default the bundle's recorded plan, without a device budget) decides how the
 * three components are kept: `allResident` opens them all here, `oneAtATime` opens each for its stage and closes
 * it after, so only one model is resident (slower: every image loads them again).
 */
class TextToImage(
    val manifest: BundleManifest,
    factory: SessionFactory,
    val tokenizer: ClipTokenizer = ClipTokenizer.fromManifest(manifest),
    val memoryPlan: MemoryPlan = MemoryPlan.plan(manifest, null),
) : AutoCloseable {
    private val sessions = ResidentSessions(factory)
    /** Session creation time in this constructor (all resident), reported as every image's load_ms (as Python). */
    val loadMs: Double
    /** Session creation time per component, of its latest load (the benchmark's load_ms). */
    val componentLoadMs: Map<String, Double> get() = sessions.componentLoadMs
    private val textEncoderSpec: ComponentSpec
    private val unetSpec: ComponentSpec
    private val vaeDecoderSpec: ComponentSpec
    private val unetBatch: Int?
    private val batchedCfg: Boolean
    private val timeCondDim: Int?
    private val textInput: String
    private val textOutput: String
    private val unetOutput: String
    private val vaeInput: String
    private val vaeOutput: String
    /** The size of the next images: the bundle's first until `useSize` picks another of its sizes. */
    var size: ImageSize = manifest.pipeline.sizes.first()
        private set
    /** The latent of one image at `size` (the sessions pick the graph shape or LiteRT signature from it). */
    val latentShape: IntArray get() = ImageSizes.latentShape(manifest, size)
    val defaultSteps: Int get() = manifest.pipeline.scheduler.numInferenceSteps
    val defaultGuidance: Double get() = manifest.pipeline.guidance.scale

    init {
        // What the loop feeds is checked before any model loads (as the Swift twin).
        unetSpec = manifest.component("unet")
        val sample = unetSpec.input("sample") ?: throw BundleError.InvalidManifest("components.unet.inputs", "a tensor named 'sample'")
        for (name in listOf("timestep", "encoder_hidden_states")) {
            if (unetSpec.input(name) == null) throw BundleError.InvalidManifest("components.unet.inputs", "a tensor named '$name'")
        }
        timeCondDim = unetSpec.input("timestep_cond")?.let { spec ->
            spec.shape.lastOrNull()?.takeIf { it >= 4 }
                ?: throw BundleError.InvalidManifest("components.unet timestep_cond", "a fixed last dimension of at least 4")
        }
        unetBatch = sample.fixedDim(0)
        batchedCfg = if (unetBatch == null) manifest.pipeline.guidance.batchedCfg else unetBatch == 2
        textEncoderSpec = manifest.component("text_encoder")
        vaeDecoderSpec = manifest.component("vae_decoder")
        textInput = textEncoderSpec.inputs[0].name
        textOutput = textEncoderSpec.outputs[0].name
        unetOutput = unetSpec.outputs[0].name
        vaeInput = vaeDecoderSpec.inputs[0].name
        vaeOutput = vaeDecoderSpec.outputs[0].name
        val start = System.nanoTime()
        if (memoryPlan.strategy == LoadStrategy.allResident) {
            try {
                for (spec in listOf(textEncoderSpec, unetSpec, vaeDecoderSpec)) sessions.session(spec)
            } catch (e: Throwable) {
                sessions.close()
                throw e
            }
        }
        loadMs = (System.nanoTime() - start) / 1e6
    }

    /**
     * Make the next images `width` x `height` (both null: the bundle's first size). A size the bundle was not
     * converted for is refused (`BundleError.UnsupportedSize`) naming the sizes it makes; nothing changes then.
     */
    fun useSize(height: Int?, width: Int?): ImageSize = ImageSizes.pick(manifest, height, width).also { size = it }

    /** The manifest's tables when they fit the request; other step counts need tables the bundle lacks. */
    fun scheduler(steps: Int? = null): TableScheduler {
        val spec = manifest.pipeline.scheduler
        val n = steps ?: defaultSteps
        spec.tablesError?.let { reason ->
            throw BundleError.UnsupportedScheduler(spec.className, "the converter could not tabulate it ($reason)")
        }
        val tables = spec.tables
            ?: throw BundleError.UnsupportedScheduler(spec.className, "the bundle carries no scheduler tables; re-create it with edgediff convert")
        if (tables.numInferenceSteps != n || tables.className != spec.className) {
            throw BundleError.UnsupportedScheduler(
                spec.className,
                "the bundle carries tables for ${tables.numInferenceSteps} steps, not $n; " +
                    "use ${tables.numInferenceSteps} steps or convert with --set pipeline.num_inference_steps=$n",
            )
        }
        return TableScheduler(tables)
    }

    private fun ids(text: String): IntTensor = IntTensor(intArrayOf(1, tokenizer.maxLength), tokenizer.encode(text), "input_ids")

    private fun encode(ids: IntTensor, textEncoder: InferenceSession): FloatTensor =
        output(textEncoder, mapOf(textInput to ids), textOutput, "text_encoder")

    /** The component's session, loaded now if the plan keeps it unloaded (the time goes to this image's load_ms). */
    private fun acquire(spec: ComponentSpec, timings: StageTimings): InferenceSession {
        val start = System.nanoTime()
        val loaded = spec.name in sessions.loaded
        val session = sessions.session(spec)
        if (!loaded) timings.loadMs += ms(start)
        return session
    }

    private fun releaseIfSequential(spec: ComponentSpec) {
        if (memoryPlan.strategy == LoadStrategy.oneAtATime) sessions.release(spec.name)
    }

    private fun output(session: InferenceSession, feeds: Map<String, Tensor>, name: String, component: String): FloatTensor =
        session.run(feeds)[name] ?: throw BundleError.SessionFailed(component, "the model returned no output '$name'")

    private fun runUnet(latents: FloatTensor, t: Float, embeds: FloatTensor, cond: FloatArray?, unet: InferenceSession): FloatTensor {
        val batch = latents.shape[0]
        val feeds = HashMap<String, Tensor>()
        feeds["sample"] = latents
        feeds["timestep"] = FloatTensor(intArrayOf(batch), FloatArray(batch) { t })
        feeds["encoder_hidden_states"] = embeds
        if (cond != null) {
            feeds["timestep_cond"] = FloatTensor(intArrayOf(batch, cond.size), FloatArray(batch * cond.size) { cond[it % cond.size] })
        }
        val out = output(unet, feeds, unetOutput, "unet")
        if (out.count != latents.count) {
            throw BundleError.InvalidTensor("unet output", "shape ${out.shapeString()}, expected ${latents.shapeString()}")
        }
        return out
    }

    /** The guided model output for one step (uncond first, then cond, as diffusers batches them). */
    private fun predictNoise(
        x: FloatTensor, t: Float, cond: FloatTensor, uncond: FloatTensor?, guidance: Double, timeCond: FloatArray?, unet: InferenceSession,
    ): FloatArray {
        if (uncond == null) {
            if (unetBatch == 2) { // a UNet exported for batched CFG, run without guidance
                val out = runUnet(FloatTensor.concat0(listOf(x, x)), t, FloatTensor.concat0(listOf(cond, cond)), timeCond, unet)
                return out.slice0(0, 1).data
            }
            return runUnet(x, t, cond, timeCond, unet).data
        }
        val u: FloatArray
        val c: FloatArray
        if (batchedCfg) {
            val out = runUnet(FloatTensor.concat0(listOf(x, x)), t, FloatTensor.concat0(listOf(uncond, cond)), timeCond, unet)
            u = out.slice0(0, 1).data
            c = out.slice0(1, 2).data
        } else {
            u = runUnet(x, t, uncond, timeCond, unet).data
            c = runUnet(x, t, cond, timeCond, unet).data
        }
        val g = guidance.toFloat()
        return FloatArray(u.size) { u[it] + g * (c[it] - u[it]) }
    }

    private fun decode(latents: FloatArray, vaeDecoder: InferenceSession): FloatTensor {
        val s = manifest.pipeline.vaeScalingFactor.toFloat()
        val shift = manifest.pipeline.vaeShiftFactor.toFloat()
        val scaled = FloatArray(latents.size) { latents[it] / s + shift }
        return output(vaeDecoder, mapOf(vaeInput to FloatTensor(latentShape, scaled)), vaeOutput, "vae_decoder")
    }

    /** One image. `latents` (unscaled, of the latent shape) replaces the seeded initial draw. */
    fun generate(
        prompt: String,
        seed: Long = 0,
        steps: Int? = null,
        guidance: Double? = null,
        negativePrompt: String = "",
        keepIntermediates: Boolean = false,
        onStep: ((step: Int, total: Int, unetMs: Double) -> Unit)? = null,
        latents: FloatArray? = null,
    ): GenerationResult {
        val tTotal = System.nanoTime()
        val timings = StageTimings().also { it.loadMs = loadMs }
        val g = guidance ?: defaultGuidance
        val sched = scheduler(steps)
        val keep = if (keepIntermediates) Intermediates() else null
        val shape = latentShape

        var t0 = System.nanoTime()
        val ids = ids(prompt)
        val doCfg = g > 1.0 && timeCondDim == null
        val uncondIds = if (doCfg) ids(negativePrompt) else null
        timings.tokenizeMs = ms(t0)

        val textEncoder = acquire(textEncoderSpec, timings)
        t0 = System.nanoTime()
        val condEmbeds = encode(ids, textEncoder)
        val uncondEmbeds = uncondIds?.let { encode(it, textEncoder) }
        timings.textEncoderMs = ms(t0)
        releaseIfSequential(textEncoderSpec)

        val rng = Noise(seed)
        val count = Tensor.elementCount(shape, "latent")
        if (latents != null && latents.size != count) {
            throw BundleError.InvalidTensor("latents", "${latents.size} values for shape ${shape.joinToString(prefix = "[", postfix = "]")}")
        }
        val noise = latents ?: rng.standardNormal(count)
        val sigma = sched.initNoiseSigma.toFloat()
        var x = FloatArray(noise.size) { noise[it] * sigma }
        val timeCond = timeCondDim?.let { guidanceScaleEmbedding(g - 1.0, it) }
        keep?.apply {
            inputIds = ids.data; uncondInputIds = uncondIds?.data; promptEmbeds = condEmbeds
            negativePromptEmbeds = uncondEmbeds; initialNoise = noise; initialLatents = x; timestepCond = timeCond
        }

        val unet = acquire(unetSpec, timings)
        sched.reset()
        for (i in 0 until sched.size) {
            val t = sched.timesteps[i]
            var tS = System.nanoTime()
            val modelIn = sched.scaleModelInput(x, i)
            timings.schedulerMs += ms(tS)
            val tU = System.nanoTime()
            val noisePred = predictNoise(FloatTensor(shape, modelIn), t, condEmbeds, uncondEmbeds, g, timeCond, unet)
            val stepMs = ms(tU)
            timings.unetStepMs += stepMs
            tS = System.nanoTime()
            val stepNoise = if (sched.stepNeedsNoise(i)) rng.standardNormal(noise.size) else null
            val next = sched.step(noisePred, i, x, stepNoise)
            timings.schedulerMs += ms(tS)
            keep?.apply { noisePredPerStep += noisePred; this.stepNoise += stepNoise; latentsPerStep += next }
            x = next
            onStep?.invoke(i, sched.size, stepMs)
        }

        releaseIfSequential(unetSpec)

        val vaeDecoder = acquire(vaeDecoderSpec, timings)
        t0 = System.nanoTime()
        val decoded = decode(x, vaeDecoder)
        val image = latentsToImage(decoded)
        timings.vaeDecoderMs = ms(t0)
        releaseIfSequential(vaeDecoderSpec)
        timings.totalMs = ms(tTotal)
        keep?.decoded = decoded
        return GenerationResult(image, seed, sched.size, g, sched.className, timings, keep)
    }

    override fun close() = sessions.close()

    companion object {
        private fun ms(start: Long) = (System.nanoTime() - start) / 1e6

        /**
         * LCM's guidance embedding of w = guidance - 1 (diffusers' get_guidance_scale_embedding), as the Python
         * runtime computes it: the exponent in float32, exp / sin / cos in float64, each rounded once to float32.
         */
        fun guidanceScaleEmbedding(w: Double, dim: Int): FloatArray {
            val half = dim / 2
            if (half < 2) throw BundleError.InvalidManifest("components.unet timestep_cond", "a size of at least 4")
            val step = StrictMath.log(10000.0).toFloat() / (half - 1).toFloat()
            val freq = FloatArray(half) { StrictMath.exp((it.toFloat() * -step).toDouble()).toFloat() }
            val scale = (w * 1000.0).toFloat()
            val out = FloatArray(dim)
            for (i in 0 until half) {
                val e = (scale * freq[i]).toDouble()
                out[i] = StrictMath.sin(e).toFloat()
                out[half + i] = StrictMath.cos(e).toFloat()
            }
            return out
        }

        /** VAE output [1,3,H,W] in [-1, 1] -> uint8 HxWx3, rounding half to even as numpy does; NaN is black. */
        fun latentsToImage(decoded: FloatTensor): RgbImage {
            if (decoded.shape.size != 4 || decoded.shape[1] != 3) {
                throw BundleError.InvalidTensor("vae_decoder output", "expected [1, 3, H, W], got ${decoded.shapeString()}")
            }
            val (h, w) = decoded.shape[2] to decoded.shape[3]
            val px = ByteArray(h * w * 3)
            for (ch in 0 until 3) for (y in 0 until h) for (x in 0 until w) {
                val v = (decoded.data[(ch * h + y) * w + x] / 2f + 0.5f).coerceIn(0f, 1f)
                px[(y * w + x) * 3 + ch] = Math.rint((v * 255f).toDouble()).toInt().toByte()
            }
            return RgbImage(w, h, px)
        }
    }
}
