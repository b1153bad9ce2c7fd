package dev.edgediff.core

import org.junit.jupiter.api.Assertions.fail
import org.junit.jupiter.api.Assumptions
import java.io.File

/**
 * Where the tests find their inputs (system properties set by jvm-test.sh) and what to do when one is missing:
 * on CI (CI=true) a missing input fails the test, elsewhere the test is skipped with the reason.
 */
object TestEnv {
    val ci: Boolean = System.getProperty("edgediff.ci", "").lowercase() in setOf("true", "1", "yes")

    private fun dir(prop: String): File? = System.getProperty(prop)?.takeIf { it.isNotBlank() }?.let(::File)?.takeIf { it.exists() }

    val repo: File get() = dir("edgediff.repo") ?: File("../../..").canonicalFile
    val golden: File get() = dir("edgediff.golden") ?: File(repo, "apps/golden")
    val testData: File? get() = dir("edgediff.testdata")
    val ortLib: File? get() = dir("edgediff.ort.lib")
    val litertLib: File? get() = dir("edgediff.litert.lib")

    val goldenModels = listOf("shapes-sd", "shapes-sd-step4", "shapes-sd-lcm4")

    fun goldenFiles(model: String): GoldenFiles = GoldenFiles(File(golden, model))

    /** Skip (or fail on CI) when `value` is null, naming what is missing and how to provide it. */
    fun <T> need(value: T?, what: String): T {
        if (value != null) return value
        val message = "$what is missing: run the tests through apps/android/core/jvm-test.sh with EDGEDIFF_TESTDATA " +
            "from apps/android/tools/prepare_test_data.py (python -m pytest tests/test_android_core.py does both)"
        if (ci) fail<Unit>(message)
        Assumptions.abort<Unit>(message)
        throw IllegalStateException(message)
    }

    fun testBundle(name: String, backend: String): File =
        need(testData?.let { File(it, "bundles/$name/$backend") }?.takeIf { File(it, "manifest.json").isFile }, "test bundle $name/$backend")

    /** The tokenizer folder of a model in the repo (identical to the one its bundles carry). */
    fun tokenizer(model: String): ClipTokenizer {
        val folder = File(repo, "models/$model/tokenizer")
        return ClipTokenizer(File(folder, "vocab.json"), File(folder, "merges.txt"), 77, ClipTokenizer.SpecialTokens.read(folder, emptyMap()))
    }
}
