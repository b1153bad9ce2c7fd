package dev.edgediff.core

import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.nio.file.Files

/**
 * Bad bundles are refused by a named check (the BundleError's code), never by a crash. Each test builds a small
 * but complete bundle (model files with real checksums, the repo's tokenizer, the default model's scheduler
 * tables), breaks one thing, and expects exactly that check to fail.
 */
class ManifestTest {
    @TempDir
    lateinit var tmp: File

    private val modelFiles = mapOf("text_encoder" to "text_encoder.onnx", "unet" to "unet.onnx", "vae_decoder" to "vae_decoder.onnx")

    private fun tensor(name: String, vararg shape: Any, dtype: String = "float32") =
        JSONObject().put("name", name).put("shape", JSONArray(shape.toList())).put("dtype", dtype)

    /** A valid edgediff-bundle/1 folder; returns its manifest JSON for the test to break. */
    private fun makeBundle(dir: File = File(tmp, "bundle")): Pair<File, JSONObject> {
        dir.mkdirs()
        val components = JSONObject()
        for ((name, file) in modelFiles) {
            val bytes = ByteArray(1000 + file.length) { (it * 31 + name.length).toByte() }
            File(dir, file).writeBytes(bytes)
            val (ins, outs) = when (name) {
                "text_encoder" -> listOf(tensor("input_ids", 1, 77, dtype = "int64")) to listOf(tensor("last_hidden_state", 1, 77, 32))
                "unet" -> listOf(tensor("sample", 2, 4, 8, 8), tensor("timestep", 2), tensor("encoder_hidden_states", 2, 77, 32)) to listOf(tensor("noise_pred", 2, 4, 8, 8))
                else -> listOf(tensor("latent", 1, 4, 8, 8)) to listOf(tensor("image", 1, 3, 64, 64))
            }
            components.put(name, JSONObject().put("file", file).put("sha256", BundleManifest.sha256File(File(dir, file)))
                .put("bytes", bytes.size).put("inputs", JSONArray(ins)).put("outputs", JSONArray(outs)))
        }
        val tokDir = File(dir, "tokenizer").apply { mkdirs() }
        for (f in listOf("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")) {
            File(TestEnv.repo, "models/shapes-sd/tokenizer/$f").copyTo(File(tokDir, f))
        }
        val tables = JSONObject(File(TestEnv.golden, "shapes-sd/scheduler_tables.json").readText())
        val manifest = JSONObject()
            .put("format", "edgediff-bundle/1").put("backend", "onnxruntime").put("precision", "fp32")
            .put("components", components)
            .put("pipeline", JSONObject().put("latent_shape", JSONArray(listOf(1, 4, 8, 8))).put("height", 64).put("width", 64)
                .put("vae_scaling_factor", 0.48407)
                .put("guidance", JSONObject().put("scale", 5.0).put("batched_cfg", true).put("embedded", false))
                .put("scheduler", JSONObject().put("class_name", "DPMSolverMultistepScheduler").put("num_inference_steps", 25).put("tables", tables)))
            .put("tokenizer", JSONObject().put("vocab", "tokenizer/vocab.json").put("merges", "tokenizer/merges.txt").put("max_length", 77)
                .put("config", "tokenizer/tokenizer_config.json"))
        write(dir, manifest)
        return dir to manifest
    }

    private fun write(dir: File, manifest: JSONObject) = File(dir, "manifest.json").writeText(manifest.toString(1))

    private inline fun <reified E : BundleError> refused(dir: File, code: String): E {
        val e = assertThrows(E::class.java) { BundleManifest.load(dir) }
        assertEquals(code, e.code)
        assertTrue(e.message!!.length > 20, "a message that says what to do: ${e.message}")
        return e
    }

    @Test
    fun `a valid bundle loads with every checksum verified`() {
        val (dir, _) = makeBundle()
        val m = BundleManifest.load(dir)
        assertEquals("edgediff-bundle/1", m.format)
        assertEquals(listOf("text_encoder", "unet", "vae_decoder"), m.components.keys.sorted())
        assertEquals(25, m.pipeline.scheduler.tables!!.steps.size)
        assertEquals(2, m.component("unet").input("sample")!!.fixedDim(0))
        ClipTokenizer.fromManifest(m) // the tokenizer the manifest points at loads
    }

    @Test
    fun `missing component`() {
        val (dir, manifest) = makeBundle()
        manifest.getJSONObject("components").remove("unet")
        write(dir, manifest)
        val e = refused<BundleError.MissingComponent>(dir, "missing_component")
        assertEquals("unet", e.component)
    }

    @Test
    fun `wrong format version`() {
        val (dir, manifest) = makeBundle()
        write(dir, manifest.put("format", "edgediff-bundle/3"))
        refused<BundleError.UnsupportedFormat>(dir, "unsupported_format")
        manifest.remove("format")
        write(dir, manifest)
        refused<BundleError.UnsupportedFormat>(dir, "unsupported_format")
    }

    @Test
    fun `checksum mismatch`() {
        val (dir, _) = makeBundle()
        val f = File(dir, "unet.onnx")
        val bytes = f.readBytes().also { it[10] = (it[10] + 1).toByte() } // same size, one byte changed
        f.writeBytes(bytes)
        val e = refused<BundleError.ChecksumMismatch>(dir, "checksum_mismatch")
        assertEquals("unet.onnx", e.file)
    }

    @Test
    fun `truncated copy and missing file`() {
        val (dir, _) = makeBundle()
        val f = File(dir, "vae_decoder.onnx")
        f.writeBytes(f.readBytes().copyOf(100))
        refused<BundleError.SizeMismatch>(dir, "size_mismatch")
        f.delete()
        refused<BundleError.MissingFile>(dir, "missing_file")
    }

    @Test
    fun `unsupported scheduler`() {
        val (dir, manifest) = makeBundle()
        val sched = manifest.getJSONObject("pipeline").getJSONObject("scheduler")
        sched.put("class_name", "KarrasVeScheduler")
        write(dir, manifest)
        refused<BundleError.UnsupportedScheduler>(dir, "unsupported_scheduler")
        sched.put("class_name", "DPMSolverMultistepScheduler")
        sched.getJSONObject("tables").put("format", "edgediff-scheduler-tables/9")
        write(dir, manifest)
        refused<BundleError.UnsupportedScheduler>(dir, "unsupported_scheduler")
    }

    @Test
    fun `path outside the bundle`() {
        val (dir, manifest) = makeBundle()
        val outside = File(tmp, "outside.onnx").apply { writeBytes(ByteArray(10)) }
        val unet = manifest.getJSONObject("components").getJSONObject("unet")
        for (path in listOf("../outside.onnx", outside.path, "tokenizer/../../outside.onnx")) {
            write(dir, manifest.also { unet.put("file", path) })
            val e = refused<BundleError.PathOutsideBundle>(dir, "path_outside_bundle")
            assertEquals(path, e.path)
        }
        // a symlink inside the folder that leads out of it
        Files.createSymbolicLink(File(dir, "link.onnx").toPath(), outside.toPath())
        write(dir, manifest.also { unet.put("file", "link.onnx") })
        refused<BundleError.PathOutsideBundle>(dir, "path_outside_bundle")
        manifest.getJSONObject("tokenizer").put("vocab", "../../etc/passwd")
        unet.put("file", "unet.onnx")
        write(dir, manifest)
        refused<BundleError.PathOutsideBundle>(dir, "path_outside_bundle")
    }

    @Test
    fun `wrong key types name the key`() {
        val (dir, manifest) = makeBundle()
        manifest.getJSONObject("pipeline").put("latent_shape", "1x4x8x8")
        write(dir, manifest)
        assertEquals("pipeline.latent_shape", refused<BundleError.InvalidManifest>(dir, "invalid_manifest").key)
        val (dir2, m2) = makeBundle(File(tmp, "b2"))
        m2.getJSONObject("components").getJSONObject("unet").getJSONArray("inputs").getJSONObject(0).put("name", 5)
        write(dir2, m2)
        assertEquals("components.unet.inputs[0].name", refused<BundleError.InvalidManifest>(dir2, "invalid_manifest").key)
        val (dir3, m3) = makeBundle(File(tmp, "b3"))
        m3.getJSONObject("components").getJSONObject("unet").put("sha256", "not-a-checksum")
        write(dir3, m3)
        assertEquals("components.unet.sha256", refused<BundleError.InvalidManifest>(dir3, "invalid_manifest").key)
    }

    @Test
    fun `version 1 tolerates Python's non-finite literals, version 2 is strict`() {
        val (dir, manifest) = makeBundle()
        fun withNonFinite() = manifest.toString(1)
            .replace("\"scheduler\": {", "\"scheduler\": {\"config\": {\"lambda_min_clipped\": -Infinity, \"x\": NaN},")
            .also { check("-Infinity" in it) }
        File(dir, "manifest.json").writeText(withNonFinite())
        BundleManifest.load(dir) // /1: read as null
        manifest.put("format", "edgediff-bundle/2").put("edgediff_version", "0.9.0")
        File(dir, "manifest.json").writeText(withNonFinite())
        assertEquals("(document)", refused<BundleError.InvalidManifest>(dir, "invalid_manifest").key)
        manifest.remove("edgediff_version")
        write(dir, manifest)
        assertEquals("edgediff_version", refused<BundleError.InvalidManifest>(dir, "invalid_manifest").key)
        write(dir, manifest.put("edgediff_version", "0.9.0"))
        assertEquals("0.9.0", BundleManifest.load(dir).edgediffVersion)
    }

    @Test
    fun `over memory budget`() {
        val (dir, _) = makeBundle()
        val m = BundleManifest.load(dir)
        m.checkMemoryBudget(1)
        val e = assertThrows(BundleError.OverMemoryBudget::class.java) { m.checkMemoryBudget(0) }
        assertEquals("over_memory_budget", e.code)
    }

    @Test
    fun `a manifest cut anywhere is refused by a named check, never a crash`() {
        val (dir, manifest) = makeBundle()
        val text = manifest.toString(1)
        val codes = HashMap<String, Int>()
        for (cut in text.indices step maxOf(1, text.length / 400)) {
            File(dir, "manifest.json").writeText(text.substring(0, cut))
            try {
                BundleManifest.load(dir)
                fail<Unit>("a manifest cut at $cut of ${text.length} characters was accepted")
            } catch (e: BundleError) {
                codes.merge(e.code, 1, Int::plus)
            } catch (e: Throwable) {
                fail<Unit>("a manifest cut at $cut crashed with ${e::class.java.name}: ${e.message}")
            }
        }
        println("cut manifests refused by: $codes")
    }
}
