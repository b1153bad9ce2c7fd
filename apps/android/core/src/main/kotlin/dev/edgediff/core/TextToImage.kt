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
 */
class TextToImage(
    val manifest: BundleManifest,
    factory: SessionFactory,
    val tokenizer: ClipTokenizer = ClipTokenizer.fromManifest(manifest),
) : AutoCloseable {
    private val textEncoder: InferenceSession
    private val unet: InferenceSession
    private val vaeDecoder: InferenceSession
    val loadMs: Double
    /** Session creation time per component (the benchmark's load_ms). */
    val componentLoadMs = LinkedHashMap<String, Double>()
    private val unetBatch: Int?
    private val batchedCfg: Boolean
    private val timeCondDim: Int?
    private val textInput: String
    private val textOutput: String
    private val unetOutput: String
    private val vaeInput: String
    private val vaeOutput: String
    val defaultSteps: Int get() = manifest.pipeline.scheduler.numInferenceSteps
    val defaultGuidance: Double get() = manifest.pipeline.guidance.scale

    init {
        val start = System.nanoTime()
        val opened = ArrayList<InferenceSession>()
        try {
            fun open(name: String): InferenceSession {
                val t = System.nanoTime()
                return ChainedSession.open(manifest.component(name), factory).also { opened += it; componentLoadMs[name] = ms(t) }
            }
            textEncoder = open("text_encoder")
            unet = open("unet")
            vaeDecoder = open("vae_decoder")
        } catch (e: Throwable) {
            opened.forEach { runCatching { it.close() } }
            throw e
        }
        loadMs = (System.nanoTime() - start) / 1e6
        val unetSpec = manifest.component("unet")
        val sample = unetSpec.input("sample") ?: throw BundleError.InvalidManifest("components.unet.inputs", "a tensor named 'sample'")
        unetBatch = sample.fixedDim(0)
        batchedCfg = if (unetBatch == null) manifest.pipeline.guidance.batchedCfg else unetBatch == 2
        timeCondDim = unetSpec.input("timestep_cond")?.let { spec ->
            spec.shape.lastOrNull()?.takeIf { it > 0 } ?: throw BundleError.InvalidManifest("components.unet timestep_cond", "a fixed last dimension")
        }
        val enc = manifest.component("text_encoder")
        textInput = enc.inputs[0].name
        textOutput = enc.outputs[0].name
        unetOutput = unetSpec.outputs[0].name
        vaeInput = manifest.component("vae_decoder").inputs[0].name
        vaeOutput = manifest.component("vae_decoder").outputs[0].name
    }

    /** The manifest's tables when they fit the request; other step counts need tables the bundle lacks. */
    fun scheduler(steps: Int? = null): TableScheduler {
        val spec = manifest.pipeline.scheduler
        val n = steps ?: defaultSteps
        val tables = spec.tables
            ?: throw BundleError.UnsupportedScheduler(spec.className, "the bundle carries no scheduler tables; re-create it with edgediff convert")
        if (tables.numInferenceSteps != n || tables.className != spec.className) {
            throw BundleError.UnsupportedScheduler(
                spec.className,
                "the bundle carries tables for ${tables.numInferenceSteps} steps, not $n; " +
                    "use ${tables.numInferenceSteps} steps or convert with --set pipeline.steps=$n",
            )
        }
        return TableScheduler(tables)
    }

    private fun ids(text: String): IntTensor = IntTensor(intArrayOf(1, tokenizer.maxLength), tokenizer.encode(text))

    private fun encode(ids: IntTensor): FloatTensor = output(textEncoder, mapOf(textInput to ids), textOutput, "text_encoder")

    private fun output(session: InferenceSession, feeds: Map<String, Tensor>, name: String, component: String): FloatTensor =
        session.run(feeds)[name] ?: throw BundleError.SessionFailed(component, "the model returned no output '$name'")

    private fun runUnet(latents: FloatTensor, t: Float, embeds: FloatTensor, cond: FloatArray?): FloatTensor {
        val batch = latents.shape[0]
        val feeds = HashMap<String, Tensor>()
        feeds["sample"] = latents
        feeds["timestep"] = FloatTensor(intArrayOf(batch), FloatArray(batch) { t })
        feeds["encoder_hidden_states"] = embeds
        if (cond != null) {
            feeds["timestep_cond"] = FloatTensor(intArrayOf(batch, cond.size), FloatArray(batch * cond.size) { cond[it % cond.size] })
        }
        return output(unet, feeds, unetOutput, "unet")
    }

    /** The guided model output for one step (uncond first, then cond, as diffusers batches them). */
    private fun predictNoise(x: FloatTensor, t: Float, cond: FloatTensor, uncond: FloatTensor?, guidance: Double, timeCond: FloatArray?): FloatArray {
        if (uncond == null) {
            if (unetBatch == 2) { // a UNet exported for batched CFG, run without guidance
                val out = runUnet(FloatTensor.concat0(listOf(x, x)), t, FloatTensor.concat0(listOf(cond, cond)), timeCond)
                return out.slice0(0, 1).data
            }
            return runUnet(x, t, cond, timeCond).data
        }
        val u: FloatArray
        val c: FloatArray
        if (batchedCfg) {
            val out = runUnet(FloatTensor.concat0(listOf(x, x)), t, FloatTensor.concat0(listOf(uncond, cond)), timeCond)
            u = out.slice0(0, 1).data
            c = out.slice0(1, 2).data
        } else {
            u = runUnet(x, t, uncond, timeCond).data
            c = runUnet(x, t, cond, timeCond).data
        }
        val g = guidance.toFloat()
        return FloatArray(u.size) { u[it] + g * (c[it] - u[it]) }
    }

    private fun decode(latents: FloatArray): FloatTensor {
        val s = manifest.pipeline.vaeScalingFactor.toFloat()
        val shift = manifest.pipeline.vaeShiftFactor.toFloat()
        val scaled = FloatArray(latents.size) { latents[it] / s + shift }
        return output(vaeDecoder, mapOf(vaeInput to FloatTensor(manifest.latentShape, scaled)), vaeOutput, "vae_decoder")
    }

    fun generate(
        prompt: String,
        seed: Long = 0,
        steps: Int? = null,
        guidance: Double? = null,
        negativePrompt: String = "",
        keepIntermediates: Boolean = false,
        onStep: ((step: Int, total: Int, unetMs: Double) -> Unit)? = null,
    ): GenerationResult {
        val tTotal = System.nanoTime()
        val timings = StageTimings().also { it.loadMs = loadMs }
        val g = guidance ?: defaultGuidance
        val sched = scheduler(steps)
        val keep = if (keepIntermediates) Intermediates() else null
        val shape = manifest.latentShape

        var t0 = System.nanoTime()
        val ids = ids(prompt)
        val doCfg = g > 1.0 && timeCondDim == null
        val uncondIds = if (doCfg) ids(negativePrompt) else null
        timings.tokenizeMs = ms(t0)

        t0 = System.nanoTime()
        val condEmbeds = encode(ids)
        val uncondEmbeds = uncondIds?.let { encode(it) }
        timings.textEncoderMs = ms(t0)

        val rng = Noise(seed)
        val noise = rng.standardNormal(Tensor.elementCount(shape))
        val sigma = sched.initNoiseSigma.toFloat()
        var x = FloatArray(noise.size) { noise[it] * sigma }
        val timeCond = timeCondDim?.let { guidanceScaleEmbedding(g - 1.0, it) }
        keep?.apply {
            inputIds = ids.data; uncondInputIds = uncondIds?.data; promptEmbeds = condEmbeds
            negativePromptEmbeds = uncondEmbeds; initialNoise = noise; initialLatents = x; timestepCond = timeCond
        }

        sched.reset()
        for (i in 0 until sched.size) {
            val t = sched.timesteps[i]
            var tS = System.nanoTime()
            val modelIn = sched.scaleModelInput(x, i)
            timings.schedulerMs += ms(tS)
            val tU = System.nanoTime()
            val noisePred = predictNoise(FloatTensor(shape, modelIn), t, condEmbeds, uncondEmbeds, g, timeCond)
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

        t0 = System.nanoTime()
        val decoded = decode(x)
        val image = latentsToImage(decoded)
        timings.vaeDecoderMs = ms(t0)
        timings.totalMs = ms(tTotal)
        keep?.decoded = decoded
        return GenerationResult(image, seed, sched.size, g, sched.className, timings, keep)
    }

    override fun close() {
        listOf(textEncoder, unet, vaeDecoder).forEach { runCatching { it.close() } }
    }

    companion object {
        private fun ms(start: Long) = (System.nanoTime() - start) / 1e6

        /**
         * LCM's guidance embedding of w = guidance - 1 (diffusers' get_guidance_scale_embedding), as the Python
         * runtime computes it: the exponent in float32, exp / sin / cos in float64, each rounded once to float32.
         */
        fun guidanceScaleEmbedding(w: Double, dim: Int): FloatArray {
            val half = dim / 2
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

        /** VAE output [1,3,H,W] in [-1, 1] -> uint8 HxWx3, rounding half to even as numpy does. */
        fun latentsToImage(decoded: FloatTensor): RgbImage {
            val (c, h, w) = Triple(decoded.shape[1], decoded.shape[2], decoded.shape[3])
            if (c != 3) throw BundleError.InvalidTensor("vae_decoder output", "expected 3 channels, got ${decoded.shapeString()}")
            val px = ByteArray(h * w * 3)
            for (ch in 0 until 3) for (y in 0 until h) for (x in 0 until w) {
                val v = (decoded.data[(ch * h + y) * w + x] / 2f + 0.5f).coerceIn(0f, 1f)
                px[(y * w + x) * 3 + ch] = Math.rint((v * 255f).toDouble()).toInt().toByte()
            }
            return RgbImage(w, h, px)
        }
    }
}
