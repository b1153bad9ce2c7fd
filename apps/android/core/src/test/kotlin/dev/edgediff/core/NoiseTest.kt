package dev.edgediff.core

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource
import org.json.JSONObject
import java.io.File

/** The seed convention, bit for bit against numpy. */
class NoiseTest {
    @Test
    fun `derived ziggurat tables are identical to numpy's`() {
        val lines = File(TestEnv.repo, "apps/android/core/src/test/resources/numpy_ziggurat_float.txt").readLines()
            .filter { !it.startsWith("#") }.associate { line -> line.substringBefore(' ') to line.substringAfter(' ').split(' ') }
        val ki = lines.getValue("ki_float").map { java.lang.Long.decode(it).toInt() }.toIntArray()
        val wi = lines.getValue("wi_float").map { it.toFloat() }.toFloatArray()
        val fi = lines.getValue("fi_float").map { it.toFloat() }.toFloatArray()
        assertArrayEquals(ki, Ziggurat.ki, "ki_float")
        assertArrayEquals(wi.map { it.toRawBits() }.toIntArray(), Ziggurat.wi.map { it.toRawBits() }.toIntArray(), "wi_float")
        assertArrayEquals(fi.map { it.toRawBits() }.toIntArray(), Ziggurat.fi.map { it.toRawBits() }.toIntArray(), "fi_float")
    }

    @ParameterizedTest
    @ValueSource(strings = ["shapes-sd", "shapes-sd-step4", "shapes-sd-lcm4"])
    fun `initial noise and injected step noise are numpy's bits`(model: String) {
        val golden = TestEnv.goldenFiles(model)
        val expected = golden.floatTensor("initial_noise")
        val rng = Noise(golden.seed)
        assertBits(expected.data, rng.standardNormal(expected.count), "$model initial_noise")
        for (i in 0 until golden.steps) {
            val name = GoldenFiles.stepName("step_noise", i)
            if (golden.has(name)) {
                val step = golden.floatTensor(name)
                assertBits(step.data, rng.standardNormal(step.count), "$model $name")
            }
        }
    }

    @Test
    fun `long draws of many seeds are numpy's bits`() {
        val dir = TestEnv.need(TestEnv.testData?.let { File(it, "noise") }?.takeIf { File(it, "index.json").isFile }, "numpy noise samples")
        val index = JSONObject(File(dir, "index.json").readText())
        val seeds = index.getJSONArray("seeds")
        var total = 0
        for (i in 0 until seeds.length()) {
            val entry = seeds.getJSONObject(i)
            val seed = entry.getString("seed").toLong()
            val raw = entry.getJSONArray("raw_uint64")
            val rawRng = Noise(seed)
            for (k in 0 until raw.length()) {
                assertEquals(java.lang.Long.parseUnsignedLong(raw.getString(k)), rawRng.nextUInt64(), "seed $seed raw draw $k")
            }
            val count = entry.getInt("count")
            val expected = Tensor.readF32(File(dir, entry.getString("file")), intArrayOf(count)).data
            assertBits(expected, Noise(seed).standardNormal(count), "seed $seed")
            total += count
        }
        println("noise: $total float32 normals over ${seeds.length()} seeds identical to numpy")
    }

    /** apps/golden/noise/noise.json (apps/golden/noise/make_noise_golden.py), shared with the Swift tests. */
    private val noiseGolden: JSONObject by lazy { JSONObject(File(TestEnv.golden, "noise/noise.json").readText()) }

    @Test
    fun `every tail draw and the whole stream of several seeds are numpy's bits`() {
        val seeds = noiseGolden.getJSONArray("seeds")
        var tails = 0
        for (i in 0 until seeds.length()) {
            val entry = seeds.getJSONObject(i)
            val seed = entry.getString("seed").toLong()
            val raw = entry.getJSONArray("raw_uint64_head")
            val rawRng = Noise(seed)
            for (k in 0 until raw.length()) {
                assertEquals(java.lang.Long.parseUnsignedLong(raw.getString(k)), rawRng.nextUInt64(), "seed $seed raw draw $k")
            }
            val values = Noise(seed).standardNormal(entry.getInt("count"))
            val tailDraws = entry.getJSONArray("tail_draws")
            for (k in 0 until tailDraws.length()) {
                val index = tailDraws.getJSONArray(k).getInt(0)
                val bits = java.lang.Long.parseLong(tailDraws.getJSONArray(k).getString(1), 16).toInt()
                assertEquals(bits, values[index].toRawBits(),
                    "seed $seed tail draw $index: numpy ${Float.fromBits(bits)} vs ${values[index]}")
            }
            tails += tailDraws.length()
            val stream = FloatTensor(intArrayOf(values.size), values).toLittleEndianBytes()
            assertEquals(entry.getString("sha256"), BundleManifest.sha256Hex(stream), "seed $seed: sha256 of ${values.size} draws")
        }
        println("noise: $tails tail draws over ${seeds.length()} seeds identical to numpy, every stream's sha256 too")
    }

    @Test
    fun `log1pf is glibc's on every input numpy passes it`() {
        assertEquals(1080990989, Noise(5).standardNormal(18975)[18974].toRawBits(), "seed 5 draw 18974 (0x406e9d0d)")
        val out = java.nio.ByteBuffer.allocate(4 shl 24).order(java.nio.ByteOrder.LITTLE_ENDIAN)
        for (k in 0 until (1 shl 24)) out.putFloat(Noise.log1pf(-(k.toFloat() * (1.0f / 16777216.0f))))
        assertEquals(noiseGolden.getString("log1pf_sha256"), BundleManifest.sha256Hex(out.array()), "log1pf over -k * 2^-24")
        assertEquals(Float.NEGATIVE_INFINITY, Noise.log1pf(-1f))
        assertTrue(Noise.log1pf(-2f).isNaN())
    }

    @Test
    fun `seed words follow numpy for seeds above 32 bits`() {
        // SeedSequence splits an integer into little-endian 32-bit words; 2^32 is [0, 1], not [0].
        val a = Noise.seedSequenceState(1L shl 32, 8)
        val b = Noise.seedSequenceState(0L, 8)
        assert(!a.contentEquals(b))
    }

    private fun assertBits(expected: FloatArray, actual: FloatArray, what: String) {
        assertEquals(expected.size, actual.size, "$what length")
        val first = expected.indices.firstOrNull { expected[it].toRawBits() != actual[it].toRawBits() }
        assertEquals(null, first, "$what: first differing value at ${first ?: 0}: numpy ${first?.let { expected[it] }} vs ${first?.let { actual[it] }}")
    }
}
