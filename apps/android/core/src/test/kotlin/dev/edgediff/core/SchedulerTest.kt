package dev.edgediff.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource

/**
 * Every scheduler step against the golden files: fed the host's guided noise predictions (and, for LCM, the
 * host's injected noise), the table scheduler must land on the host's latents after each step.
 */
class SchedulerTest {
    @ParameterizedTest
    @ValueSource(strings = ["shapes-sd", "shapes-sd-step4", "shapes-sd-lcm4"])
    fun `every step's latents match the golden files`(model: String) {
        val golden = TestEnv.goldenFiles(model)
        val sched = TableScheduler(golden.schedulerTables)
        assertEquals(golden.scheduler, sched.className)
        assertEquals(golden.steps, sched.size)
        var x = golden.floatTensor("initial_latents").data
        sched.reset()
        var worst = 0.0
        for (i in 0 until sched.size) {
            val modelIn = sched.scaleModelInput(x, i)
            if (i == 0) assertEquals(0.0, GoldenCheck.maxAbsDiff(modelIn, golden.floatTensor("step0_model_input").data), "step 0 model input")
            val pred = golden.floatTensor(GoldenFiles.stepName("noise_pred_step", i)).data
            val noiseName = GoldenFiles.stepName("step_noise", i)
            assertEquals(sched.stepNeedsNoise(i), golden.has(noiseName), "step $i noise")
            val noise = if (golden.has(noiseName)) golden.floatTensor(noiseName).data else null
            x = sched.step(pred, i, x, noise)
            val expected = golden.floatTensor(GoldenFiles.stepName("latents_after_step", i)).data
            val d = GoldenCheck.maxAbsDiff(x, expected)
            worst = maxOf(worst, d)
            assertTrue(d <= 1e-6, "$model step $i: latents differ by $d")
            x = expected // each step from the host's latents: a failure names its own step
        }
        println("scheduler $model (${sched.className}, ${sched.size} steps): max |latent - host| over all steps = $worst")
    }

    @Test
    fun `stepping out of order is a named scheduler error, not a crash`() {
        val golden = TestEnv.goldenFiles("shapes-sd")
        val sched = TableScheduler(golden.schedulerTables)
        sched.reset()
        val x = golden.floatTensor("initial_latents").data
        // DPM-Solver++ 2M's second step combines the previous output: skipping step 0 must be refused.
        val e = assertThrows(BundleError.UnsupportedScheduler::class.java) { sched.step(x, 1, x) }
        assertEquals("unsupported_scheduler", e.code)
    }

    @Test
    fun `a noise-injecting step without noise is refused`() {
        val sched = TableScheduler(TestEnv.goldenFiles("shapes-sd-lcm4").schedulerTables)
        sched.reset()
        val x = FloatArray(256)
        assertThrows(BundleError.UnsupportedScheduler::class.java) { sched.step(x, 0, x, null) }
    }

    @Test
    fun `the guidance embedding matches the host's timestep_cond`() {
        for (model in listOf("shapes-sd-step4", "shapes-sd-lcm4")) {
            val golden = TestEnv.goldenFiles(model)
            val expected = golden.floatTensor("timestep_cond")
            val actual = TextToImage.guidanceScaleEmbedding(golden.guidance - 1.0, expected.shape.last())
            val d = GoldenCheck.maxAbsDiff(actual, expected.data)
            println("timestep_cond $model: max abs diff $d")
            assertTrue(d <= 1e-6, "$model timestep_cond differs by $d")
        }
    }
}
