import XCTest
@testable import EdgediffKit

/// The rules the Swift core shares with the Kotlin one (apps/android/core ParityTest.kt has the same cases, one for
/// one): what each refuses and how, so an app on either platform says the same thing about the same bundle or run.
final class ParityTests: XCTestCase {
    func testTensorsOfTheWrongSizeSlicesOutOfRangeAndStacksOfDifferentShapesAreInvalidTensors() throws {
        assertRefused("invalid_tensor") { _ = try FloatTensor(shape: [2, 3], data: [Float](repeating: 0, count: 5)) }
        assertRefused("invalid_tensor") { _ = try IntTensor(shape: [4], data: [0, 0, 0]) }
        let x = try FloatTensor(shape: [2, 3], data: [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try x.slice0(from: 1, to: 2).data, [3, 4, 5])
        assertRefused("invalid_tensor") { _ = try x.slice0(from: 1, to: 3) }
        assertRefused("invalid_tensor") { _ = try x.slice0(from: 1, to: 1) }
        assertRefused("invalid_tensor") { _ = try FloatTensor.concat0([]) }
        let a = try FloatTensor(shape: [1, 2, 3], data: [Float](repeating: 0, count: 6))
        let b = try FloatTensor(shape: [1, 3, 2], data: [Float](repeating: 0, count: 6))
        assertRefused("invalid_tensor") { _ = try FloatTensor.concat0([a, b]) }  // same count per row, other shape
        XCTAssertEqual(try FloatTensor.concat0([x, try x.slice0(from: 0, to: 1)]).shape, [3, 3])
    }

    func testASchedulerStepOutOfRangeOrWithMismatchedSizesIsANamedError() throws {
        var scheduler = TableScheduler(tables: try TestEnv.goldenFiles("shapes-sd-lcm4").schedulerTables())
        scheduler.reset()
        let x = [Float](repeating: 0, count: 256)
        let size = scheduler.size
        assertRefused("unsupported_scheduler") { _ = try scheduler.step(x, size, x, noise: x) }
        assertRefused("unsupported_scheduler") { _ = try scheduler.step(x, -1, x, noise: x) }
        assertRefused("invalid_tensor") { _ = try scheduler.step(x, 0, [Float](repeating: 0, count: 3), noise: x) }
        assertRefused("invalid_tensor") { _ = try scheduler.step(x, 0, x, noise: [Float](repeating: 0, count: 3)) }
    }

    func testATokenizerShorterThanItsStartAndEndTokensIsRefused() throws {
        let folder = TestEnv.tokenizerFolder("shapes-sd")
        let vocab = folder.appendingPathComponent("vocab.json")
        let merges = folder.appendingPathComponent("merges.txt")
        assertRefused("invalid_manifest") { _ = try ClipTokenizer(vocab: vocab, merges: merges, maxLength: 1) }
        XCTAssertEqual(try ClipTokenizer(vocab: vocab, merges: merges, maxLength: 2).encode("a cat").count, 2)
    }

    func testTheInitialNoiseOfASeedByShapeIsTheGoldenFilesInitialNoise() throws {
        let golden = try TestEnv.goldenFiles("shapes-sd")
        let expected = try golden.floatTensor("initial_noise")
        let noise = try Noise.initialNoise(seed: golden.seed, shape: expected.shape)
        XCTAssertEqual(noise.shape, expected.shape)
        assertBits(expected.data, noise.data, "initial_noise by shape")
        var rng = Noise(seed: 0)
        assertRefused("invalid_tensor") { _ = try rng.standardNormal(shape: [-1, 4]) }
    }

    func testGoldenComparisonsTreatUnequalSizesNaNAndAMissingRunAlike() throws {
        XCTAssertEqual(GoldenCheck.maxAbsDiff([1, 2], [1]), .infinity)
        XCTAssertEqual(GoldenCheck.maxAbsDiff([.nan], [1]), .infinity)
        XCTAssertEqual(GoldenCheck.psnr([], [], range: 2), -.infinity)
        XCTAssertEqual(GoldenCheck.psnr([.nan], [1], range: 2), -.infinity)
        XCTAssertEqual(GoldenCheck.psnr([1], [1, 2], range: 2), -.infinity)
        XCTAssertEqual(GoldenCheck.psnr([1], [1], range: 2), .infinity)
        let golden = try TestEnv.goldenFiles("shapes-sd-step4")
        let bare = GenerationResult(image: RgbImage(width: 1, height: 1, pixels: [0, 0, 0]), seed: 0, steps: 4, guidance: 1,
                                    scheduler: "DDIMScheduler", timings: StageTimings(), intermediates: nil)
        let tables = try golden.schedulerTables()
        assertRefused("invalid_tensor") { _ = try GoldenCheck.compare(golden: golden, result: bare, tables: tables) }
        let device = GoldenTolerances.device
        XCTAssertEqual([device.textEmbedsMaxAbs, device.timestepCondMaxAbs, device.noisePredMaxAbs, device.latentsMaxAbs,
                        device.decodedPsnrDb, device.imagePsnrDb], [5e-2, 1e-6, 5e-2, 5e-2, 30, 30])
    }

    func testGoldenFilesWithANegativeSeedAreRefusedAMissingPromptIsEmpty() throws {
        let copy = try TestEnv.temporaryFolder(self).appendingPathComponent("golden", isDirectory: true)
        try FileManager.default.copyItem(at: TestEnv.golden.appendingPathComponent("shapes-sd-step4", isDirectory: true), to: copy)
        let file = copy.appendingPathComponent("golden.json")
        var json = try JSONValue.read(file)
        json = try BundleBuilder.setting(json, ["seed"], .number(-1))
        try Data(json.serialized().utf8).write(to: file)
        let error = assertRefused("invalid_manifest") { _ = try GoldenFiles(dir: copy) }
        if case .invalidManifest(let key, _)? = error { XCTAssertEqual(key, "golden.json: seed") }
        json = try BundleBuilder.setting(json, ["seed"], .number(3))
        json = try BundleBuilder.setting(json, ["prompt"], nil)
        try Data(json.serialized().utf8).write(to: file)
        XCTAssertEqual(try GoldenFiles(dir: copy).prompt, "")
    }

    func testBenchmarkReportsNeedLatenciesAndRunsAndEmptyStatisticsAreZero() async throws {
        XCTAssertEqual(BenchmarkReport.median([]), 0)
        XCTAssertEqual(BenchmarkReport.p90([]), 0)
        assertRefused("invalid_manifest") {
            _ = try BenchmarkReport(device: ["model": .string("iPhone16,1")], backend: "coreml", precision: "fp16", manifestSha256: nil,
                                    results: [ComponentBenchmark(component: "unet", latenciesMs: [])])
        }
        assertRefused("invalid_manifest") {
            _ = try BenchmarkReport(device: [:], backend: "coreml", precision: "fp16", manifestSha256: nil,
                                    results: [ComponentBenchmark(component: "unet", latenciesMs: [1])])
        }
        let bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        let pipeline = try TextToImage(manifest: try bundle.load(), sessions: ResidentSessions(factory: ShapeSessions()))
        await assertRefusedAsync("invalid_manifest") {
            _ = try await BenchmarkRunner(pipeline: pipeline, computeUnits: "cpu").run(prompt: "a cat", seed: 0, warmup: 0, runs: 0)
        }
        let results = try await BenchmarkRunner(pipeline: pipeline, computeUnits: "cpu").run(prompt: "a cat", seed: 0, warmup: 0, runs: 1)
        XCTAssertEqual(results.first?.settings["memory_strategy"]?.stringValue, "allResident")
    }

    func testTheLoopChecksTheUNetsInputsAndOutputsBeforeAndWhileItRuns() async throws {
        let folder = try TestEnv.temporaryFolder(self)
        var bundle = try BundleBuilder(in: folder)
        var unet = bundle.manifest["components"]?["unet"]?.objectValue ?? [:]
        var inputs = unet["inputs"]?.arrayValue ?? []
        inputs.remove(at: 1)  // timestep
        unet["inputs"] = .array(inputs)
        try bundle.set(["components", "unet"], .object(unet))
        let missing = try bundle.load()
        assertRefused("invalid_manifest") { _ = try TextToImage(manifest: missing, sessions: ResidentSessions(factory: ShapeSessions())) }
        let lcm = try BundleBuilder(in: folder, name: "lcm", unetBatch: 1, timeCondDim: 2)
        let small = try lcm.load()
        assertRefused("invalid_manifest") { _ = try TextToImage(manifest: small, sessions: ResidentSessions(factory: ShapeSessions())) }
        assertRefused("invalid_manifest") { _ = try TextToImage.guidanceScaleEmbedding(7, dim: 2) }
        let wrong = try BundleBuilder(in: folder, name: "wrong-unet")
        let pipeline = try TextToImage(manifest: try wrong.load(), sessions: ResidentSessions(factory: ShapeSessions(unetOutputCount: 5)))
        await assertRefusedAsync("invalid_tensor") { _ = try await pipeline.generate(prompt: "a cat") }
        assertRefused("invalid_tensor") { _ = try TextToImage.latentsToImage(try FloatTensor(shape: [3, 4, 4], repeating: 0)) }
        let black = try TextToImage.latentsToImage(try FloatTensor(shape: [1, 3, 1, 1], data: [.nan, 1, -1]))
        XCTAssertEqual([black.value(y: 0, x: 0, c: 0), black.value(y: 0, x: 0, c: 1), black.value(y: 0, x: 0, c: 2)], [0, 255, 0])
    }

    func testGivenLatentsReplaceTheSeededDraw() async throws {
        let bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        let pipeline = try TextToImage(manifest: try bundle.load(), sessions: ResidentSessions(factory: ShapeSessions()))
        let latents = (0..<256).map { Float($0) / 256 }
        let result = try await pipeline.generate(prompt: "a cat", latents: latents, keepIntermediates: true)
        XCTAssertEqual(result.intermediates?.initialNoise, latents)
        await assertRefusedAsync("invalid_tensor") { _ = try await pipeline.generate(prompt: "a cat", latents: [0, 0, 0]) }
    }

    func testABundleWithoutUsableTablesSaysWhyAndTheStepHintNamesTheRecipeKey() throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        let pipeline = try TextToImage(manifest: try bundle.load(), sessions: ResidentSessions(factory: ShapeSessions()))
        let error = assertRefused("unsupported_scheduler") { _ = try pipeline.scheduler(steps: 4) }
        XCTAssertTrue(error?.description.contains("--set pipeline.num_inference_steps=4") == true, String(describing: error))
        try bundle.set(["pipeline", "scheduler", "tables"], nil)
        try bundle.set(["pipeline", "scheduler", "tables_error"], .string("PNDM with Runge-Kutta warm-up steps is not supported"))
        let untabulated = try TextToImage(manifest: try bundle.load(), sessions: ResidentSessions(factory: ShapeSessions()))
        let reason = assertRefused("unsupported_scheduler") { _ = try untabulated.scheduler() }
        XCTAssertTrue(reason?.description.contains("Runge-Kutta") == true, String(describing: reason))
    }

    func testASequentialMemoryPlanLoadsEachComponentForItsStageAndLetsItGo() async throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        let resident = ResidentSessions(factory: ShapeSessions())
        let allResident = try TextToImage(manifest: try bundle.load(), sessions: resident)
        XCTAssertEqual(allResident.memoryPlan.strategy, .allResident)
        _ = try await allResident.generate(prompt: "a cat")
        let kept = await resident.loaded
        XCTAssertEqual(kept, ["text_encoder", "unet", "vae_decoder"])
        try bundle.set(["memory"], .object([
            "peak_mb": .number(2350), "budget_mb": .number(2000), "plan": .string("sequential"),
            "components": .object(["text_encoder": .number(250), "unet": .number(1700), "vae_decoder": .number(400)]),
        ]))
        let sequential = ResidentSessions(factory: ShapeSessions())
        let oneAtATime = try TextToImage(manifest: try bundle.load(), sessions: sequential)
        XCTAssertEqual(oneAtATime.memoryPlan.strategy, .oneAtATime)
        _ = try await oneAtATime.generate(prompt: "a cat")
        let left = await sequential.loaded
        XCTAssertEqual(left, [])
        let loadTimes = await sequential.componentLoadMs
        XCTAssertEqual(loadTimes.keys.sorted(), ["text_encoder", "unet", "vae_decoder"])
    }

    func testStageTimingsSummariseWithThePythonKeys() {
        var timings = StageTimings()
        timings.unetStepMs = [3, 1, 2, 10]
        let summary = timings.summary()
        XCTAssertEqual(summary.keys.sorted(), ["load_ms", "tokenize_ms", "text_encoder_ms", "unet_total_ms", "unet_calls", "unet_step_median_ms",
                                               "unet_step_min_ms", "unet_step_max_ms", "scheduler_ms", "vae_decoder_ms", "total_ms"].sorted())
        XCTAssertEqual([summary["unet_calls"], summary["unet_step_median_ms"], summary["unet_step_min_ms"], summary["unet_step_max_ms"],
                        summary["unet_total_ms"]], [4, 2.5, 1, 10, 16])
    }
}

/// Sessions that answer with constant tensors of each output's shape (no runtime needed): for checks of the loop's
/// rules, not of its numbers. `unetOutputCount` makes the UNet answer with the wrong number of values.
struct ShapeSessions: SessionFactory {
    var unetOutputCount: Int? = nil

    func open(_ component: ComponentSpec, _ chunk: ChunkSpec) async throws -> any InferenceSession {
        ShapeSession(inputs: chunk.inputs, outputs: chunk.outputs, component: component.name, unetOutputCount: unetOutputCount)
    }
}

struct ShapeSession: InferenceSession {
    let inputs: [TensorSpec]
    let outputs: [TensorSpec]
    let component: String
    let unetOutputCount: Int?

    func run(_ feeds: [String: Tensor]) async throws -> [String: FloatTensor] {
        var out: [String: FloatTensor] = [:]
        for spec in outputs {
            let shape = spec.shape.map { dim -> Int in
                if case .fixed(let size) = dim, size > 0 { return size }
                return 1
            }
            let full = shape.reduce(1, *)
            let count = component == "unet" ? (unetOutputCount ?? full) : full
            out[spec.name] = try FloatTensor(shape: count == full ? shape : [count], data: [Float](repeating: 0.1, count: count))
        }
        return out
    }
}

/// `assertRefused` for async work.
func assertRefusedAsync(_ code: String, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> Void) async {
    do {
        try await body()
        XCTFail("expected \(code), nothing was thrown", file: file, line: line)
    } catch let error as BundleError {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
    } catch {
        XCTFail("expected BundleError \(code), got \(error)", file: file, line: line)
    }
}
