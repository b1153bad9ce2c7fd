import XCTest
@testable import EdgediffKit

/// The seed convention, bit for bit against numpy (numpy 2.4 on Linux made every expected value below).
final class NoiseTests: XCTestCase {
    func testInitialNoiseAndInjectedStepNoiseAreNumpysBits() throws {
        for model in TestEnv.goldenModels {
            let golden = try TestEnv.goldenFiles(model)
            let expected = try golden.floatTensor("initial_noise")
            var rng = Noise(seed: golden.seed)
            assertBits(expected.data, rng.standardNormal(count: expected.count), "\(model) initial_noise")
            for i in 0..<golden.steps {
                let name = GoldenFiles.stepName("step_noise", i)
                guard golden.has(name) else { continue }
                let step = try golden.floatTensor(name)
                assertBits(step.data, rng.standardNormal(count: step.count), "\(model) \(name)")
            }
        }
    }

    func testRawPCG64DrawsAreNumpys() {
        // np.random.PCG64(seed).random_raw(3): covers SeedSequence, the 128-bit LCG step and the XSL-RR output,
        // for seeds of one and two 32-bit words (2^32 is [0, 1], not [0]).
        let expected: [(UInt64, [UInt64])] = [
            (0, [11_749_869_230_777_074_271, 4_976_686_463_289_251_617, 755_828_109_848_996_024]),
            (1, [9_441_442_522_235_856_127, 17_532_960_557_476_522_086, 2_659_275_481_604_167_885]),
            (1 << 32, [16_412_783_775_159_424_549, 10_277_383_025_879_800_780, 14_774_146_505_460_541_886]),
            (UInt64.max, [12_544_278_110_101_001_871, 15_593_249_672_699_323_225, 136_562_751_618_339_402]),
        ]
        for (seed, draws) in expected {
            var rng = Noise(seed: seed)
            let raw = [rng.nextUInt64(), rng.nextUInt64(), rng.nextUInt64()]
            XCTAssertEqual(raw, draws, "seed \(seed)")
        }
    }

    func testFloat32NormalsOfSeed42() {
        // np.random.default_rng(42).standard_normal(8, dtype=np.float32).view(np.uint32)
        let expected: [UInt32] = [0x3E11_501D, 0xBFD5_91AB, 0xBFAA_8284, 0x3F15_2239, 0x3EBF_81BA, 0x3FE0_B269, 0x3E0E_FAE7, 0x3ED6_A039]
        var rng = Noise(seed: 42)
        let bits = rng.standardNormal(count: 8).map(\.bitPattern)
        XCTAssertEqual(bits, expected)
    }

    func testATailDrawThatNeedsGlibcsLog1pf() {
        // Draw 18974 of seed 5 goes through the ziggurat's tail, where numpy calls log1pf; log1pf computed as a
        // rounded double (what most libms return) gives 3.728335380554199 here, numpy on Linux 3.7283356189727783.
        var rng = Noise(seed: 5)
        let draws = rng.standardNormal(count: 18_975)
        XCTAssertEqual(draws[18_974].bitPattern, 1_080_990_989)
    }

    func testLog1pfPortOnEasyValues() {
        XCTAssertEqual(Noise.log1pf(0), 0)
        for x: Float in [-0.5, -0.25, -1e-6, -0.75, -0.99999988] {
            let reference = Float(log1p(Double(x)))
            XCTAssertEqual(Noise.log1pf(x), reference, accuracy: abs(reference) * 3e-7, "log1pf(\(x))")  // within an ulp
        }
        XCTAssertTrue(Noise.log1pf(-1).isInfinite)
    }

    /// apps/golden/noise/noise.json (apps/golden/noise/make_noise_golden.py), shared with the Kotlin tests.
    static func noiseGolden() throws -> [String: JSONValue] {
        let url = TestEnv.golden.appendingPathComponent("noise/noise.json")
        guard let document = try JSONValue.read(url).objectValue else { throw BundleError.invalidJson(file: url.path, detail: "not an object") }
        return document
    }

    func testEveryTailDrawAndTheWholeStreamOfSeveralSeedsAreNumpysBits() throws {
        let seeds = try NoiseTests.noiseGolden()["seeds"]?.arrayValue ?? []
        XCTAssertGreaterThanOrEqual(seeds.count, 5)
        for entry in seeds {
            guard let seedText = entry["seed"]?.stringValue, let seed = UInt64(seedText), let count = entry["count"]?.intValue,
                  let tails = entry["tail_draws"]?.arrayValue, let sha = entry["sha256"]?.stringValue else {
                return XCTFail("noise.json: a seed entry without seed, count, tail_draws or sha256")
            }
            var rawRng = Noise(seed: seed)
            for (k, text) in (entry["raw_uint64_head"]?.arrayValue ?? []).enumerated() {
                let draw = rawRng.nextUInt64()
                XCTAssertEqual(text.stringValue.flatMap { UInt64($0) }, draw, "seed \(seed) raw draw \(k)")
            }
            var rng = Noise(seed: seed)
            let values = rng.standardNormal(count: count)
            for tail in tails {
                guard let pair = tail.arrayValue, pair.count == 2, let index = pair[0].intValue, index < values.count,
                      let bits = pair[1].stringValue.flatMap({ UInt32($0, radix: 16) }) else {
                    return XCTFail("noise.json: a tail draw that is not [index, hex bits]")
                }
                XCTAssertEqual(values[index].bitPattern, bits,
                               "seed \(seed) tail draw \(index): numpy \(Float(bitPattern: bits)) vs \(values[index])")
            }
            let stream = try FloatTensor(shape: [values.count], data: values).toLittleEndianBytes()
            XCTAssertEqual(SHA256.hex(of: stream), sha, "seed \(seed): sha256 of \(count) draws")
        }
    }

    func testLog1pfIsGlibcsOnEveryInputNumpyPassesIt() throws {
        let expected = try NoiseTests.noiseGolden()["log1pf_sha256"]?.stringValue
        var bytes = [UInt8](repeating: 0, count: 4 << 24)  // little-endian float32, as the generator hashes them
        for k in 0..<(1 << 24) {
            let bits = Noise.log1pf(-(Float(k) * 0x1p-24)).bitPattern
            bytes[4 * k] = UInt8(truncatingIfNeeded: bits)
            bytes[4 * k + 1] = UInt8(truncatingIfNeeded: bits >> 8)
            bytes[4 * k + 2] = UInt8(truncatingIfNeeded: bits >> 16)
            bytes[4 * k + 3] = UInt8(truncatingIfNeeded: bits >> 24)
        }
        var hasher = SHA256()
        hasher.update(bytes)
        XCTAssertEqual(hasher.finalizeHex(), expected, "log1pf over -k * 2^-24")
        XCTAssertEqual(Noise.log1pf(-1), -.infinity)
        XCTAssertTrue(Noise.log1pf(-2).isNaN)
    }

    func testSeedWordsFollowNumpyAboveThirtyTwoBits() {
        XCTAssertEqual(SeedSequence.words(of: 0), [0])
        XCTAssertEqual(SeedSequence.words(of: 1 << 32), [0, 1])
        XCTAssertNotEqual(SeedSequence.state(entropy: SeedSequence.words(of: 1 << 32)), SeedSequence.state(entropy: [0]))
    }
}
