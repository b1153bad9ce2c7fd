package dev.edgediff.core

import dev.edgediff.core.jvm.LiteRtRuntime
import dev.edgediff.core.jvm.OrtRuntime
import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.File

/**
 * A bundle with several image sizes (pipeline.sizes): the core reads them, lets the caller pick one (the first
 * by default), refuses one the bundle lacks naming those it has, and feeds the latent of the picked size; ONNX
 * Runtime's one dynamic graph and LiteRT's size_WxH signatures then reproduce the Python runtime's golden run at
 * every size (SizesTests.swift has the same cases).
 */
class SizesTest {
    @TempDir
    lateinit var tmp: File

    private val three = listOf(ImageSize(64, 64), ImageSize(64, 96), ImageSize(96, 64))

    private fun sized(bundle: TestBundle, sizes: List<ImageSize>) =
        bundle.set(listOf("pipeline", "sizes"), JSONArray(sizes.map { JSONArray(listOf(it.height, it.width)) }))

    private fun refused(code: String, body: () -> Unit): BundleError {
        val e = assertThrows(BundleError::class.java) { body() }
        assertEquals(code, e.code, e.message)
        return e
    }

    @Test
    fun `a bundle lists its sizes, the first by default, and refuses one it lacks naming the others`() {
        val bundle = TestBundle(File(tmp, "bundle"))
        assertEquals(listOf(ImageSize(64, 64)), bundle.load().pipeline.sizes) // no pipeline.sizes: one size
        sized(bundle, three)
        val manifest = bundle.load()
        assertEquals(three, manifest.pipeline.sizes)
        TextToImage(manifest, ShapeSessions()).use { pipe ->
            assertEquals(ImageSize(64, 64), pipe.size)
            assertArrayEquals(intArrayOf(1, 4, 8, 8), pipe.latentShape)
            assertEquals(ImageSize(96, 64), pipe.useSize(96, 64))
            assertArrayEquals(intArrayOf(1, 4, 12, 8), pipe.latentShape)
            val e = refused("unsupported_size") { pipe.useSize(128, 64) }
            assertTrue("64x64, 96x64, 64x96 (width x height)" in e.message!!, e.message)
            refused("unsupported_size") { pipe.useSize(100, 64) } // not a multiple of the latent factor
            refused("unsupported_size") { pipe.useSize(64, null) }
            assertEquals(ImageSize(96, 64), pipe.size, "a refused size changes nothing")
            assertEquals(ImageSize(64, 64), pipe.useSize(null, null))
        }
        assertEquals("size_96x64", ImageSize(64, 96).signature(three[0]))
        assertEquals("serving_default", three[0].signature(three[0]))
    }

    @Test
    fun `malformed size lists are invalid manifests`() {
        val bundle = TestBundle(File(tmp, "bundle"))
        val bad = listOf(
            JSONArray(), JSONArray(listOf(JSONArray(listOf(64, 96)))), // empty; first is not height x width
            JSONArray(listOf(JSONArray(listOf(64, 64)), JSONArray(listOf(64, 64)))), // a size twice
            JSONArray(listOf(JSONArray(listOf(64, 64)), JSONArray(listOf(64)))), // not a pair
            JSONArray(listOf(JSONArray(listOf(64, 64)), JSONArray(listOf(4, 64)))), // below 8
            JSONArray(listOf(JSONArray(listOf(64, 64)), JSONArray(listOf(68, 64)))), // not a multiple of 8
            JSONArray(listOf(JSONArray(listOf(64, 64)), "96x64")), "64x64",
        )
        for (value in bad) {
            bundle.set(listOf("pipeline", "sizes"), value)
            val e = refused("invalid_manifest") { bundle.load() }
            assertTrue((e as BundleError.InvalidManifest).key.startsWith("pipeline.sizes"), "$value: ${e.key}")
        }
    }

    @Test
    fun `a LiteRT run goes to the signature of its input shapes`() {
        val sigs = listOf(
            "serving_default" to listOf(intArrayOf(2, 4, 8, 8), intArrayOf(2)),
            "size_64x96" to listOf(intArrayOf(2, 4, 12, 8), intArrayOf(2)),
            "size_96x64" to listOf(intArrayOf(2, 4, 8, 12), intArrayOf(2)),
        )
        assertEquals(2, ImageSizes.chooseSignature(sigs, listOf(intArrayOf(2, 4, 8, 12), intArrayOf(2))))
        assertEquals(0, ImageSizes.chooseSignature(sigs, listOf(intArrayOf(2, 4, 8, 8), intArrayOf(2))))
        val e = refused("unsupported_size") { ImageSizes.chooseSignature(sigs, listOf(intArrayOf(2, 4, 16, 16), intArrayOf(2))) }
        assertTrue("size_96x64 [2, 4, 8, 12]" in e.message!!, e.message)
        assertEquals(0, ImageSizes.chooseSignature(sigs.take(1), listOf(intArrayOf(1))), "one signature: always it")
    }

    @Test
    fun `golden files of a bundle with several sizes hold one run per size`() {
        val golden = TestEnv.goldenFiles(SIZED_MODEL)
        assertEquals(ImageSize(64, 64), golden.size)
        assertEquals(setOf(ImageSize(64, 96), ImageSize(96, 64)), golden.otherSizes.keys)
        for (size in three) {
            val at = golden.atSize(size)
            assertEquals(size, at.size)
            assertArrayEquals(intArrayOf(1, 4, size.height / 8, size.width / 8), at.latentShape)
            assertArrayEquals(at.latentShape, at.floatTensor("initial_noise").shape)
            assertEquals(golden.prompt, at.prompt)
        }
        refused("unsupported_size") { golden.atSize(ImageSize(128, 128)) }
        // one-size golden files (written before sizes existed) still read, with no size
        val old = TestEnv.goldenFiles("shapes-sd-step4")
        assertEquals(null, old.size)
        assertEquals(old, old.atSize(ImageSize(64, 64)))
        // a golden.json whose size folder points outside is refused
        val copy = File(tmp, "golden")
        File(TestEnv.golden, SIZED_MODEL).copyRecursively(copy)
        val file = File(copy, "golden.json")
        val json = JSONObject(file.readText())
        json.getJSONArray("sizes").getJSONObject(0).put("golden", "../../etc")
        file.writeText(json.toString())
        refused("path_outside_bundle") { GoldenFiles(copy).atSize(ImageSize(64, 96)) }
    }

    private fun runEverySize(bundle: File, factory: SessionFactory, golden: GoldenFiles, label: String, afterRun: (ImageSize) -> Unit = {}) {
        val manifest = BundleManifest.load(bundle)
        assertEquals(three, manifest.pipeline.sizes)
        TextToImage(manifest, factory).use { pipe ->
            for (size in three) {
                pipe.useSize(size.height, size.width)
                val expected = golden.atSize(size)
                val result = pipe.generate(expected.prompt, expected.seed, expected.steps, expected.guidance, expected.negativePrompt, keepIntermediates = true)
                assertEquals(size.width to size.height, result.image.width to result.image.height)
                val report = GoldenCheck.compare(expected, result, manifest.pipeline.scheduler.tables!!, pipe.tokenizer)
                val image = report.checks.first { it.stage == "image" }
                println("$label $size: image PSNR vs the Python runtime = %.2f dB; ${result.timings.describe()}".format(image.value))
                assertTrue(report.passed, "$label at $size drifted at ${report.firstDrift}\n${report.describe()}")
                afterRun(size)
            }
        }
    }

    @Test
    fun `onnxruntime's one dynamic graph reproduces the golden run at every size`() {
        val bundle = TestEnv.testBundle(SIZED_MODEL, "onnxruntime")
        OrtRuntime(TestEnv.need(TestEnv.ortLib, "libonnxruntime.so (onnxruntime wheel)").path).use { runtime ->
            runEverySize(bundle, runtime, TestEnv.goldenFiles(SIZED_MODEL), "onnxruntime $SIZED_MODEL")
        }
    }

    @Test
    fun `litert runs each size through its size_WxH signature and matches the Python runtime`() {
        val bundle = TestEnv.testBundle(SIZED_MODEL, "litert")
        val golden = GoldenFiles(TestEnv.need(TestEnv.testData?.let { File(it, "golden-litert/$SIZED_MODEL") }?.takeIf { it.isDirectory }, "golden files of the litert bundle with sizes"))
        LiteRtRuntime(TestEnv.need(TestEnv.litertLib, "libLiteRt.so (ai-edge-litert wheel)").path).use { runtime ->
            var unet: LiteRtRuntime.LiteRtJnaSession? = null
            val factory = SessionFactory { component, chunk ->
                runtime.open(component, chunk).also { if (component.name == "unet") unet = it as LiteRtRuntime.LiteRtJnaSession }
            }
            runEverySize(bundle, factory, golden, "litert $SIZED_MODEL") { size ->
                val session = unet!!
                assertEquals(listOf("serving_default", "size_64x96", "size_96x64"), session.signatureKeys.sorted())
                assertEquals(size.signature(three[0]), session.lastSignature)
            }
        }
    }

    companion object {
        const val SIZED_MODEL = "shapes-sd-step4-sizes"
    }
}
