package dev.edgediff.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import java.io.File

/** The self-check names the first stage that drifted; chunked components chain by tensor name. */
class GoldenCheckTest {
    /** A run rebuilt from the golden tensors themselves: what a perfect device would produce. */
    private fun replay(golden: GoldenFiles): GenerationResult {
        val keep = Intermediates().apply {
            inputIds = golden.inputIds
            uncondInputIds = golden.negativeInputIds
            promptEmbeds = golden.floatTensor("prompt_embeds")
            negativePromptEmbeds = if (golden.has("negative_prompt_embeds")) golden.floatTensor("negative_prompt_embeds") else null
            initialNoise = golden.floatTensor("initial_noise").data
            timestepCond = if (golden.has("timestep_cond")) golden.floatTensor("timestep_cond").data else null
            for (i in 0 until golden.steps) {
                noisePredPerStep += golden.floatTensor(GoldenFiles.stepName("noise_pred_step", i)).data
                latentsPerStep += golden.floatTensor(GoldenFiles.stepName("latents_after_step", i)).data
            }
            decoded = golden.floatTensor("decoded")
        }
        val image = TextToImage.latentsToImage(keep.decoded!!)
        return GenerationResult(image, golden.seed, golden.steps, golden.guidance, golden.scheduler, StageTimings(), keep)
    }

    @Test
    fun `a faithful run passes every stage and a drifting one names its first stage`() {
        val golden = TestEnv.goldenFiles("shapes-sd")
        val tables = golden.schedulerTables
        val clean = GoldenCheck.compare(golden, replay(golden), tables, TestEnv.tokenizer("shapes-sd"))
        assertTrue(clean.passed, clean.describe())
        assertEquals(golden.steps * 2 + 9, clean.checks.size, "tokens (3), tables, noise, 2 embeddings, 2 per step, decoded, image")

        val drifting = replay(golden)
        val lat = drifting.intermediates!!.latentsPerStep
        lat[7] = FloatArray(lat[7].size) { lat[7][it] + 0.01f }
        lat[12] = FloatArray(lat[12].size) { lat[12][it] + 0.5f }
        val report = GoldenCheck.compare(golden, drifting, tables)
        assertEquals("latents.step_007", report.firstDrift?.stage, report.describe())
        assertTrue(report.describe().endsWith("drift starts at latents.step_007"))
    }

    @Test
    fun `a golden tensor that was altered is refused by its checksum`() {
        val src = File(TestEnv.golden, "shapes-sd-step4")
        val copy = File(System.getProperty("java.io.tmpdir"), "golden-altered-${System.nanoTime()}")
        src.copyRecursively(copy)
        try {
            val f = File(copy, "tensors/initial_noise.f32")
            f.writeBytes(f.readBytes().also { it[0] = (it[0] + 1).toByte() })
            val e = assertThrows(BundleError.ChecksumMismatch::class.java) { GoldenFiles(copy).floatTensor("initial_noise") }
            assertEquals("checksum_mismatch", e.code)
        } finally {
            copy.deleteRecursively()
        }
    }

    private class Fn(names: List<String>, outs: List<String>, val f: (Map<String, Tensor>) -> Map<String, FloatTensor>) : InferenceSession {
        override val inputs = names.map { TensorSpec(it, listOf(2), "float32") }
        override val outputs = outs.map { TensorSpec(it, listOf(2), "float32") }
        override fun run(feeds: Map<String, Tensor>) = f(feeds)
    }

    @Test
    fun `chunks chain by tensor name`() {
        val x = FloatTensor(intArrayOf(2), floatArrayOf(1f, 2f))
        fun data(t: Tensor?) = (t as FloatTensor).data
        val first = Fn(listOf("x"), listOf("h")) { mapOf("h" to FloatTensor(intArrayOf(2), FloatArray(2) { i -> data(it["x"])[i] * 2 })) }
        val second = Fn(listOf("h", "x"), listOf("y")) { m -> mapOf("y" to FloatTensor(intArrayOf(2), FloatArray(2) { i -> data(m["h"])[i] + data(m["x"])[i] })) }
        val spec = ComponentSpec("unet", first.inputs, second.outputs, emptyList())
        val out = ChainedSession(spec, listOf(first, second)).run(mapOf("x" to x))
        assertEquals(listOf(3f, 6f), out.getValue("y").data.toList())
        val broken = ChainedSession(spec, listOf(second))
        assertEquals("session_failed", assertThrows(BundleError.SessionFailed::class.java) { broken.run(mapOf("x" to x)) }.code)
    }

    @Test
    fun `benchmark statistics agree with the importer's (median, p90 by linear interpolation)`() {
        val values = listOf(10.0, 12.0, 11.0, 30.0, 13.0)
        assertEquals(12.0, BenchmarkReport.median(values))
        assertEquals(23.2, BenchmarkReport.p90(values), 1e-9) // sorted 10,11,12,13,30: pos 3.6 -> 13 + 0.6*17
        assertEquals(11.5, BenchmarkReport.median(listOf(13.0, 10.0, 11.0, 12.0)), 1e-9)
    }
}
