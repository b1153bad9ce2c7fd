package dev.edgediff.core

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import org.junit.jupiter.api.function.Executable
import java.io.File

/**
 * The rules the Kotlin core shares with the Swift one (ParityTests.swift has the same cases, one for one): what
 * each refuses and how, so an app on either platform says the same thing about the same bundle or run.
 */
class ParityTest {
    @TempDir
    lateinit var tmp: File

    private fun refused(code: String, body: () -> Unit): BundleError {
        val e = assertThrows(BundleError::class.java, Executable { body() })
        assertEquals(code, e.code, e.message)
        return e
    }

    @Test
    fun `tensors of the wrong size, slices out of range and stacks of different shapes are invalid tensors`() {
        refused("invalid_tensor") { FloatTensor(intArrayOf(2, 3), FloatArray(5)) }
        refused("invalid_tensor") { IntTensor(intArrayOf(4), IntArray(3)) }
        val x = FloatTensor(intArrayOf(2, 3), FloatArray(6) { it.toFloat() })
        assertArrayEquals(floatArrayOf(3f, 4f, 5f), x.slice0(1, 2).data)
        refused("invalid_tensor") { x.slice0(1, 3) }
        refused("invalid_tensor") { x.slice0(1, 1) }
        refused("invalid_tensor") { FloatTensor.concat0(emptyList()) }
        // same element count per row, different trailing shape
        refused("invalid_tensor") { FloatTensor.concat0(listOf(FloatTensor(intArrayOf(1, 2, 3), FloatArray(6)), FloatTensor(intArrayOf(1, 3, 2), FloatArray(6)))) }
        assertArrayEquals(intArrayOf(3, 3), FloatTensor.concat0(listOf(x, x.slice0(0, 1))).shape)
    }

    @Test
    fun `a scheduler step out of range or with mismatched sizes is a named error`() {
        val sched = TableScheduler(TestEnv.goldenFiles("shapes-sd-lcm4").schedulerTables)
        sched.reset()
        val x = FloatArray(256)
        refused("unsupported_scheduler") { sched.step(x, sched.size, x, x) }
        refused("unsupported_scheduler") { sched.step(x, -1, x, x) }
        refused("invalid_tensor") { sched.step(x, 0, FloatArray(3), x) }
        refused("invalid_tensor") { sched.step(x, 0, x, FloatArray(3)) }
    }

    @Test
    fun `a tokenizer shorter than its start and end tokens is refused`() {
        val folder = File(TestEnv.repo, "models/shapes-sd/tokenizer")
        refused("invalid_manifest") { ClipTokenizer(File(folder, "vocab.json"), File(folder, "merges.txt"), 1) }
        assertEquals(2, ClipTokenizer(File(folder, "vocab.json"), File(folder, "merges.txt"), 2).encode("a cat").size)
    }

    @Test
    fun `the initial noise of a seed by shape is the golden files' initial noise`() {
        val golden = TestEnv.goldenFiles("shapes-sd")
        val expected = golden.floatTensor("initial_noise")
        val noise = Noise.initialNoise(golden.seed, expected.shape)
        assertArrayEquals(expected.shape, noise.shape)
        assertArrayEquals(expected.data.map { it.toRawBits() }.toIntArray(), noise.data.map { it.toRawBits() }.toIntArray())
        refused("invalid_tensor") { Noise(0).standardNormal(intArrayOf(-1, 4)) }
    }

    @Test
    fun `golden comparisons treat unequal sizes, NaN and a missing run alike`() {
        assertEquals(Double.POSITIVE_INFINITY, GoldenCheck.maxAbsDiff(floatArrayOf(1f, 2f), floatArrayOf(1f)))
        assertEquals(Double.POSITIVE_INFINITY, GoldenCheck.maxAbsDiff(floatArrayOf(Float.NaN), floatArrayOf(1f)))
        assertEquals(Double.NEGATIVE_INFINITY, GoldenCheck.psnr(FloatArray(0), FloatArray(0), 2.0))
        assertEquals(Double.NEGATIVE_INFINITY, GoldenCheck.psnr(floatArrayOf(Float.NaN), floatArrayOf(1f), 2.0))
        assertEquals(Double.NEGATIVE_INFINITY, GoldenCheck.psnr(floatArrayOf(1f), floatArrayOf(1f, 2f), 2.0))
        assertEquals(Double.POSITIVE_INFINITY, GoldenCheck.psnr(floatArrayOf(1f), floatArrayOf(1f), 2.0))
        val golden = TestEnv.goldenFiles("shapes-sd-step4")
        val image = RgbImage(1, 1, ByteArray(3))
        val bare = GenerationResult(image, 0, 4, 1.0, "DDIMScheduler", StageTimings(), null)
        refused("invalid_tensor") { GoldenCheck.compare(golden, bare, golden.schedulerTables) }
        val device = GoldenTolerances.device
        assertEquals(listOf(5e-2, 1e-6, 5e-2, 5e-2, 30.0, 30.0), listOf(device.textEmbedsMaxAbs, device.timestepCondMaxAbs,
            device.noisePredMaxAbs, device.latentsMaxAbs, device.decodedPsnrDb, device.imagePsnrDb))
    }

    @Test
    fun `golden files with a negative seed are refused, a missing prompt is empty`() {
        val copy = File(tmp, "golden")
        File(TestEnv.golden, "shapes-sd-step4").copyRecursively(copy)
        val file = File(copy, "golden.json")
        val json = org.json.JSONObject(file.readText())
        file.writeText(json.put("seed", -1).toString())
        assertEquals("golden.json: seed", (refused("invalid_manifest") { GoldenFiles(copy) } as BundleError.InvalidManifest).key)
        file.writeText(json.put("seed", 3).also { it.remove("prompt") }.toString())
        assertEquals("", GoldenFiles(copy).prompt)
    }

    @Test
    fun `benchmark reports need latencies and runs, and empty statistics are zero`() {
        assertEquals(0.0, BenchmarkReport.median(emptyList()))
        assertEquals(0.0, BenchmarkReport.p90(emptyList()))
        refused("invalid_manifest") {
            BenchmarkReport(mapOf("model" to "Pixel 8"), "litert", "fp16", null, listOf(ComponentBenchmark("unet", emptyList())))
        }
        refused("invalid_manifest") { BenchmarkReport(emptyMap(), "litert", "fp16", null, listOf(ComponentBenchmark("unet", listOf(1.0)))) }
        val bundle = TestBundle(File(tmp, "bundle"))
        TextToImage(bundle.load(), ShapeSessions()).use { pipe ->
            refused("invalid_manifest") { BenchmarkRunner(pipe, "cpu").run("a cat", 0, warmup = 0, runs = 0) }
            val results = BenchmarkRunner(pipe, "cpu").run("a cat", 0, warmup = 0, runs = 1)
            assertEquals("allResident", results.first().settings["memory_strategy"])
        }
    }

    @Test
    fun `the loop checks the UNet's inputs and outputs before and while it runs`() {
        val bundle = TestBundle(File(tmp, "bundle"))
        val inputs = bundle.manifest.getJSONObject("components").getJSONObject("unet").getJSONArray("inputs")
        inputs.remove(1) // timestep
        bundle.write()
        refused("invalid_manifest") { TextToImage(bundle.load(), ShapeSessions()) }
        val lcm = TestBundle(File(tmp, "lcm"), unetBatch = 1, timeCondDim = 2)
        refused("invalid_manifest") { TextToImage(lcm.load(), ShapeSessions()) }
        refused("invalid_manifest") { TextToImage.guidanceScaleEmbedding(7.0, 2) }
        TextToImage(TestBundle(File(tmp, "wrong-unet")).load(), ShapeSessions(unetOutputCount = 5)).use { pipe ->
            refused("invalid_tensor") { pipe.generate("a cat") }
        }
        refused("invalid_tensor") { TextToImage.latentsToImage(FloatTensor(intArrayOf(3, 4, 4), FloatArray(48))) }
        val black = TextToImage.latentsToImage(FloatTensor(intArrayOf(1, 3, 1, 1), floatArrayOf(Float.NaN, 1f, -1f)))
        assertEquals(listOf(0, 255, 0), (0 until 3).map { black.value(0, 0, it) })
    }

    @Test
    fun `given latents replace the seeded draw`() {
        TextToImage(TestBundle(File(tmp, "bundle")).load(), ShapeSessions()).use { pipe ->
            val latents = FloatArray(256) { it / 256f }
            val result = pipe.generate("a cat", steps = null, keepIntermediates = true, latents = latents)
            assertArrayEquals(latents, result.intermediates!!.initialNoise)
            refused("invalid_tensor") { pipe.generate("a cat", latents = FloatArray(3)) }
        }
    }

    @Test
    fun `a bundle without usable tables says why, and the step hint names the recipe key`() {
        val bundle = TestBundle(File(tmp, "bundle"))
        TextToImage(bundle.load(), ShapeSessions()).use { pipe ->
            val e = refused("unsupported_scheduler") { pipe.scheduler(4) }
            assertTrue("--set pipeline.num_inference_steps=4" in e.message!!, e.message)
        }
        bundle.set(listOf("pipeline", "scheduler", "tables"), org.json.JSONObject().put("\$delete", true))
        bundle.set(listOf("pipeline", "scheduler", "tables_error"), "PNDM with Runge-Kutta warm-up steps is not supported")
        TextToImage(bundle.load(), ShapeSessions()).use { pipe ->
            val e = refused("unsupported_scheduler") { pipe.scheduler() }
            assertTrue("Runge-Kutta" in e.message!!, e.message)
        }
    }

    @Test
    fun `a sequential memory plan loads each component for its stage and lets it go`() {
        val bundle = TestBundle(File(tmp, "bundle"))
        val resident = ShapeSessions()
        TextToImage(bundle.load(), resident).use { pipe ->
            assertEquals(LoadStrategy.allResident, pipe.memoryPlan.strategy)
            assertEquals(listOf("text_encoder", "unet", "vae_decoder"), resident.opened)
            pipe.generate("a cat")
            assertEquals(emptyList<String>(), resident.closed)
        }
        bundle.set(listOf("memory"), org.json.JSONObject().put("peak_mb", 2350).put("budget_mb", 2000).put("plan", "sequential")
            .put("components", org.json.JSONObject().put("text_encoder", 250).put("unet", 1700).put("vae_decoder", 400)))
        val sequential = ShapeSessions()
        TextToImage(bundle.load(), sequential).use { pipe ->
            assertEquals(LoadStrategy.oneAtATime, pipe.memoryPlan.strategy)
            assertEquals(emptyList<String>(), sequential.opened)
            pipe.generate("a cat")
            assertEquals(listOf("text_encoder", "unet", "vae_decoder"), sequential.opened)
            assertEquals(listOf("text_encoder", "unet", "vae_decoder"), sequential.closed)
        }
    }

    @Test
    fun `stage timings summarise with the Python keys`() {
        val t = StageTimings().apply { unetStepMs += listOf(3.0, 1.0, 2.0, 10.0) }
        val s = t.summary()
        assertEquals(listOf("load_ms", "tokenize_ms", "text_encoder_ms", "unet_total_ms", "unet_calls", "unet_step_median_ms",
            "unet_step_min_ms", "unet_step_max_ms", "scheduler_ms", "vae_decoder_ms", "total_ms").sorted(), s.keys.sorted())
        assertEquals(listOf(4.0, 2.5, 1.0, 10.0, 16.0), listOf(s["unet_calls"], s["unet_step_median_ms"], s["unet_step_min_ms"],
            s["unet_step_max_ms"], s["unet_total_ms"]))
    }
}
