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

    /** A valid edgediff-bundle/1 folder; returns its manifest JSON for the test to break. */
    private fun makeBundle(dir: File = File(tmp, "bundle")): Pair<File, JSONObject> = TestBundle(dir).let { it.dir to it.manifest }

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
        BundleManifest.load(dir) // /1: allowed where nothing reads them
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
    fun `the memory section is read and one rule decides, the same as Swift's`() {
        val bundle = TestBundle(File(tmp, "memory"))
        val measured = JSONObject().put("peak_mb", 2350).put("budget_mb", 3000).put("target", "pixel-8")
            .put("components", JSONObject().put("text_encoder", 250).put("unet", 1700).put("vae_decoder", 400))
        bundle.set(listOf("memory"), measured)
        val m = bundle.load()
        assertEquals(MemorySpec(2350.0, mapOf("text_encoder" to 250.0, "unet" to 1700.0, "vae_decoder" to 400.0), 3000.0, "pixel-8"), m.memory)
        // The sum exceeds the budget but each component fits: loaded one at a time, not refused.
        assertEquals(LoadStrategy.allResident, MemoryPlan.plan(m, 6000.0).strategy)
        val tight = MemoryPlan.plan(m, 2000.0)
        assertEquals(LoadStrategy.oneAtATime, tight.strategy)
        assertTrue("one at a time" in tight.explanation, tight.explanation)
        m.checkMemoryBudget(2000L)
        val e = assertThrows(BundleError.OverMemoryBudget::class.java) { MemoryPlan.plan(m, 1500.0) }
        assertEquals(1700L to 1500L, e.neededMb to e.budgetMb)
        // The recorded plan is followed when the device gives at least the budget it was made for.
        bundle.set(listOf("memory", "budget_mb"), 2000)
        bundle.set(listOf("memory", "plan"), "sequential")
        bundle.set(listOf("memory", "note"), "2350 MB with every component loaded exceeds pixel-8's 2000 MB budget")
        val planned = bundle.load()
        assertEquals("sequential", planned.memory?.plan)
        assertEquals(LoadStrategy.oneAtATime, MemoryPlan.plan(planned, null).strategy)
        assertEquals(LoadStrategy.oneAtATime, MemoryPlan.plan(planned, 8000.0).strategy)
        bundle.set(listOf("memory", "plan"), "all resident")
        assertEquals(LoadStrategy.allResident, MemoryPlan.plan(bundle.load(), null).strategy)
        // ... and recomputed when the device gives less than that.
        assertThrows(BundleError.OverMemoryBudget::class.java) { MemoryPlan.plan(bundle.load(), 1000.0) }
        bundle.set(listOf("memory", "plan"), "does not fit")
        val refused = assertThrows(BundleError.OverMemoryBudget::class.java) { MemoryPlan.plan(bundle.load(), null) }
        assertEquals(1700L to 2000L, refused.neededMb to refused.budgetMb)
    }

    @Test
    fun `the manifest file itself may be given instead of its folder`() {
        val (dir, _) = makeBundle()
        assertEquals(BundleManifest.load(dir).manifestSha256, BundleManifest.load(File(dir, "manifest.json")).manifestSha256)
    }

    @Test
    fun `every shared manifest case gives the answer Swift gives (apps golden manifest_cases json)`() {
        val cases = JSONObject(File(TestEnv.golden, "manifest_cases.json").readText()).getJSONArray("cases")
        val wrong = ArrayList<String>()
        for (i in 0 until cases.length()) {
            val case = cases.getJSONObject(i)
            val bundle = TestBundle(File(tmp, "case$i"))
            val sets = case.getJSONArray("set")
            for (k in 0 until sets.length()) {
                val entry = sets.getJSONArray(k)
                val path = (0 until entry.length() - 1).map { entry.get(it) }
                bundle.set(path, entry.get(entry.length() - 1).takeIf { it != JSONObject.NULL })
            }
            val text = case.optString("document", null) ?: (case.optString("prefix", "") + bundle.text())
            bundle.writeText(text)
            val expect = case.getJSONObject("expect")
            val got = try {
                bundle.load()
                "loads"
            } catch (e: BundleError) {
                if (e is BundleError.InvalidManifest) "${e.code} ${e.key}" else e.code
            } catch (e: Throwable) {
                "crash ${e::class.java.simpleName}: ${e.message}"
            }
            val want = if (expect.optBoolean("loads")) "loads" else listOfNotNull(expect.getString("code"), expect.optString("key", null)).joinToString(" ")
            if (got != want) wrong += "${case.getString("name")}: expected $want, got $got"
        }
        assertTrue(wrong.isEmpty(), wrong.joinToString("\n"))
        println("manifest cases: ${cases.length()} shared cases answered as Swift must")
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
        assertEquals(setOf("invalid_json"), codes.keys, "a strict parser refuses every cut, as the Swift twin's")
    }
}
