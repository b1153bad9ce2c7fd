package dev.edgediff.core

import dev.edgediff.core.jvm.LiteRtRuntime
import dev.edgediff.core.jvm.OrtRuntime
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource
import java.io.File

/**
 * The whole text -> image loop on the JVM through the real runtimes (ONNX Runtime's and LiteRT's C libraries),
 * checked stage by stage against the Python runtime's golden files of the same bundle kind, and the final
 * image against the Python runtime's image at the same seed (PSNR >= 40 dB).
 */
class EndToEndTest {
    private fun ort() = OrtRuntime(TestEnv.need(TestEnv.ortLib, "libonnxruntime.so (onnxruntime wheel)").path)

    private fun litert() = LiteRtRuntime(TestEnv.need(TestEnv.litertLib, "libLiteRt.so (ai-edge-litert wheel)").path)

    private fun runAgainst(bundle: File, factory: SessionFactory, golden: GoldenFiles, label: String, tol: GoldenTolerances = GoldenTolerances()): Double {
        val manifest = BundleManifest.load(bundle)
        TextToImage(manifest, factory).use { pipe ->
            val result = pipe.generate(golden.prompt, golden.seed, golden.steps, golden.guidance, golden.negativePrompt, keepIntermediates = true)
            val report = GoldenCheck.compare(golden, result, manifest.pipeline.scheduler.tables!!, pipe.tokenizer, tol)
            val image = report.checks.first { it.stage == "image" }
            println("$label: ${result.timings.describe()}\n${report.describe().prependIndent("  ")}")
            println("$label: image PSNR vs the Python runtime = %.2f dB".format(image.value))
            assertTrue(report.passed, "$label drifted at ${report.firstDrift}")
            return image.value
        }
    }

    @ParameterizedTest
    @ValueSource(strings = ["shapes-sd", "shapes-sd-step4", "shapes-sd-lcm4"])
    fun `onnxruntime on the JVM reproduces the golden run stage by stage`(model: String) {
        val bundle = TestEnv.testBundle(model, "onnxruntime")
        ort().use { runtime ->
            val psnr = runAgainst(bundle, runtime, TestEnv.goldenFiles(model), "onnxruntime $model")
            assertTrue(psnr >= 40.0, "image PSNR $psnr dB")
        }
    }

    @Test
    fun `litert on the JVM reproduces the Python runtime's litert run`() {
        val bundle = TestEnv.testBundle("shapes-sd", "litert")
        val golden = GoldenFiles(TestEnv.need(TestEnv.testData?.let { File(it, "golden-litert/shapes-sd") }?.takeIf { it.isDirectory }, "golden files of the litert bundle"))
        litert().use { runtime -> runAgainst(bundle, runtime, golden, "litert shapes-sd (vs Python on the same litert bundle)") }
    }

    @Test
    fun `litert on the JVM gives the checked-in default model image within 40 dB`() {
        val bundle = TestEnv.testBundle("shapes-sd", "litert")
        val golden = TestEnv.goldenFiles("shapes-sd")
        // Across runtimes the per-stage tensors differ by float rounding (LiteRT's kernels are not ORT's: ~1e-5
        // here); the default tolerances (1e-4 embeddings, 1e-3 noise predictions and latents) still hold.
        litert().use { runtime ->
            val psnr = runAgainst(bundle, runtime, golden, "litert shapes-sd (vs the checked-in onnxruntime golden)")
            assertTrue(psnr >= 40.0, "image PSNR $psnr dB")
        }
    }

    @Test
    fun `a bundle made for another runtime is refused before any session opens`() {
        val bundle = TestEnv.testBundle("shapes-sd", "litert")
        val manifest = BundleManifest.load(bundle)
        ort().use { runtime ->
            val e = org.junit.jupiter.api.Assertions.assertThrows(BundleError::class.java) { TextToImage(manifest, runtime).close() }
            println("onnxruntime given a .tflite bundle: ${e.code}: ${e.message}")
            assertEquals("session_failed", e.code)
        }
    }

    @Test
    fun `the benchmark writes the report edgediff profile imports`() {
        val bundle = TestEnv.testBundle("shapes-sd-step4", "onnxruntime")
        val manifest = BundleManifest.load(bundle)
        ort().use { runtime ->
            TextToImage(manifest, runtime).use { pipe ->
                val results = BenchmarkRunner(pipe, "cpu").run("a red circle", 0, warmup = 1, runs = 3)
                val report = BenchmarkReport(mapOf("model" to "jvm-test", "name" to "JVM on the test host"), manifest.backend, manifest.precision, manifest.manifestSha256, results)
                val out = File(TestEnv.need(TestEnv.testData, "test data folder"), "benchmark/app-report.json")
                report.write(out)
                val json = JSONObject(out.readText())
                assertEquals(BenchmarkReport.FORMAT, json.getString("format"))
                val unet = (0 until json.getJSONArray("results").length()).map { json.getJSONArray("results").getJSONObject(it) }.first { it.getString("component") == "unet" }
                assertEquals(3 * 4, unet.getJSONArray("latencies_ms").length(), "4 UNet calls per image, 3 images")
                println("benchmark report: ${out.path}")
            }
        }
    }
}
