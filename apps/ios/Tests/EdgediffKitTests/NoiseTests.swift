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

    func testSeedWordsFollowNumpyAboveThirtyTwoBits() {
        XCTAssertEqual(SeedSequence.words(of: 0), [0])
        XCTAssertEqual(SeedSequence.words(of: 1 << 32), [0, 1])
        XCTAssertNotEqual(SeedSequence.state(entropy: SeedSequence.words(of: 1 << 32)), SeedSequence.state(entropy: [0]))
    }
}
