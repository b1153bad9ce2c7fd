import XCTest
@testable import EdgediffKit

/// The whole text -> image loop of `TextToImage` against the golden files, on Linux too.
///
/// There is no Core ML here, so the models' outputs are the Python runtime's recorded ones (`RecordedSession`); what
/// is tested is everything around them, for real: tokenizing, the CFG batching, the seeded initial latent, the
/// guidance embedding, every scheduler step, the VAE input scaling, the image rounding, and that GoldenCheck
/// passes such a run and names the stage where a run drifts. Each recorded session also checks what it is fed
/// against the golden inputs of that call, so a wrong feed fails even when the output would hide it.
final class GoldenCheckTests: XCTestCase {
    func testTheLoopReproducesEveryGoldenStage() async throws {
        for model in TestEnv.goldenModels {
            let (report, problems) = try await replay(model)
            XCTAssertEqual(problems, [], "\(model): what the sessions were fed")
            XCTAssertTrue(report.passed, "\(model) drifted at \(String(describing: report.firstDrift))\n\(report.describe())")
            XCTAssertTrue(report.checks.contains { $0.stage == "initial_noise" && $0.value == 0 }, "\(model): initial noise bit-exact")
            print("golden \(model):\n\(report.describe())")
        }
    }

    func testADriftingStepIsNamed() async throws {
        let (report, _) = try await replay("shapes-sd", perturbStep: 2)
        XCTAssertFalse(report.passed)
        XCTAssertEqual(report.firstDrift?.stage, "unet.step_002", report.describe())
    }

    func testTablesThatDifferAreNamed() throws {
        let golden = try TestEnv.goldenFiles("shapes-sd-step4")
        let tables = try golden.schedulerTables()
        XCTAssertTrue(GoldenCheck.compareTables(tables, tables).passed)
        let other = try TestEnv.goldenFiles("shapes-sd-lcm4").schedulerTables()
        let check = GoldenCheck.compareTables(other, tables)
        XCTAssertFalse(check.passed)
        XCTAssertTrue(check.detail.contains("class"), check.detail)
    }

    func testAGoldenTensorWithAWrongChecksumIsRefused() throws {
        let folder = try TestEnv.temporaryFolder(self)
        let copy = folder.appendingPathComponent("shapes-sd", isDirectory: true)
        try FileManager.default.copyItem(at: TestEnv.golden.appendingPathComponent("shapes-sd"), to: copy)
        let golden = try GoldenFiles(dir: copy)
        let entry = try XCTUnwrap(golden.tensors["initial_noise"])
        let file = copy.appendingPathComponent("tensors/\(entry.file)")
        var bytes = [UInt8](try Data(contentsOf: file))
        bytes[0] ^= 1
        try Data(bytes).write(to: file)
        assertRefused("checksum_mismatch") { _ = try golden.floatTensor("initial_noise") }
        assertRefused("invalid_tensor") { _ = try golden.intTensor("initial_noise") }
    }

    /// Runs `model`'s golden prompt through `TextToImage` over recorded sessions and compares with GoldenCheck.
    private func replay(_ model: String, perturbStep: Int? = nil) async throws -> (GoldenReport, [String]) {
        let golden = try TestEnv.goldenFiles(model)
        let timeCondDim: Int? = try golden.has("timestep_cond") ? golden.floatTensor("timestep_cond").count : nil
        let bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self), model: model, unetBatch: timeCondDim == nil ? 2 : 1,
                                       timeCondDim: timeCondDim)
        let manifest = try bundle.load()
        let recorded = try RecordedSessions(golden: golden, manifest: manifest, perturbStep: perturbStep)
        let pipeline = try TextToImage(manifest: manifest, sessions: recorded)
        let result = try await pipeline.generate(prompt: golden.prompt, seed: golden.seed, steps: golden.steps, guidance: golden.guidance,
                                                 negativePrompt: golden.negativePrompt, keepIntermediates: true)
        let report = try GoldenCheck.compare(golden: golden, result: result, tables: try pipeline.scheduler(steps: golden.steps).tables,
                                             tokenizer: pipeline.tokenizer)
        return (report, await recorded.log.problems)
    }
}

/// What the recorded sessions noticed about their inputs.
actor ProblemLog {
    private(set) var problems: [String] = []
    private var unetCalls = 0

    func note(_ problem: String) { problems.append(problem) }

    func nextUnetCall() -> Int {
        defer { unetCalls += 1 }
        return unetCalls
    }
}

/// Sessions that return the golden run's recorded outputs and check their inputs against the golden run's.
struct RecordedSessions: SessionProvider {
    let log: ProblemLog
    let sessions: [String: RecordedSession]

    init(golden: GoldenFiles, manifest: BundleManifest, perturbStep: Int?) throws {
        let log = ProblemLog()
        let prompt = try golden.floatTensor("prompt_embeds")
        let negative: FloatTensor? = try golden.has("negative_prompt_embeds") ? golden.floatTensor("negative_prompt_embeds") : nil
        let timestepCond: [Float]? = try golden.has("timestep_cond") ? golden.floatTensor("timestep_cond").data : nil
        let tables = try golden.schedulerTables()
        var predictions: [[Float]] = []
        var samples = [try golden.floatTensor("step0_model_input").data]
        for i in 0..<golden.steps {
            var prediction = try golden.floatTensor(GoldenFiles.stepName("noise_pred_step", i)).data
            if i == perturbStep { prediction = prediction.map { $0 + 0.01 } }
            predictions.append(prediction)
            samples.append(try golden.floatTensor(GoldenFiles.stepName("latents_after_step", i)).data)
        }
        let scaling = Float(manifest.pipeline.vaeScalingFactor)
        let record = RecordedSession.Record(
            inputIds: golden.inputIds, negativeInputIds: golden.negativeInputIds, promptEmbeds: prompt, negativeEmbeds: negative,
            timesteps: tables.steps.map { Float($0.timestep) }, samples: samples, predictions: predictions,
            timestepCond: timestepCond,
            vaeInput: try golden.floatTensor("final_latents").data.map { $0 / scaling }, decoded: try golden.floatTensor("decoded"))
        var sessions: [String: RecordedSession] = [:]
        for name in BundleManifest.requiredComponents {
            let spec = try manifest.component(name)
            sessions[name] = RecordedSession(component: spec, record: record, log: log)
        }
        self.log = log
        self.sessions = sessions
    }

    func session(for component: ComponentSpec) async throws -> any InferenceSession {
        guard let session = sessions[component.name] else { throw BundleError.missingComponent(component: component.name, have: []) }
        return session
    }

    func release(_ component: String) async {}
}

struct RecordedSession: InferenceSession {
    struct Record: Sendable {
        let inputIds: [Int32]
        let negativeInputIds: [Int32]?
        let promptEmbeds: FloatTensor
        let negativeEmbeds: FloatTensor?
        let timesteps: [Float]
        /// The UNet's expected `sample` per call: step 0's model input, then each step's resulting latents.
        let samples: [[Float]]
        let predictions: [[Float]]
        let timestepCond: [Float]?
        let vaeInput: [Float]
        let decoded: FloatTensor
    }

    let component: ComponentSpec
    let record: Record
    let log: ProblemLog

    var inputs: [TensorSpec] { component.inputs }
    var outputs: [TensorSpec] { component.outputs }

    func run(_ feeds: [String: Tensor]) async throws -> [String: FloatTensor] {
        let output = component.outputs[0].name
        switch component.name {
        case "text_encoder":
            guard case .int(let ids)? = feeds["input_ids"] else { throw BundleError.sessionFailed(component: "text_encoder", detail: "no input_ids") }
            if ids.data == record.inputIds { return [output: record.promptEmbeds] }
            if ids.data == record.negativeInputIds, let negative = record.negativeEmbeds { return [output: negative] }
            await log.note("text_encoder fed ids that are neither the prompt's nor the negative prompt's")
            return [output: record.promptEmbeds]
        case "unet":
            let call = await log.nextUnetCall()
            guard call < record.predictions.count, case .float(let sample)? = feeds["sample"],
                  case .float(let timestep)? = feeds["timestep"], case .float(let states)? = feeds["encoder_hidden_states"] else {
                throw BundleError.sessionFailed(component: "unet", detail: "call \(call) is one too many or lacks an input")
            }
            let batch = sample.shape.first ?? 1
            let perItem = sample.count / max(batch, 1)
            for item in 0..<batch where GoldenCheck.maxAbsDiff(Array(sample.data[(item * perItem)..<((item + 1) * perItem)]), record.samples[call]) > 1e-6 {
                await log.note("unet call \(call): sample \(item) is not the golden latent")
            }
            if timestep.data.contains(where: { $0 != record.timesteps[call] }) {
                await log.note("unet call \(call): timestep \(timestep.data) instead of \(record.timesteps[call])")
            }
            let expectedStates = batch == 2 ? (record.negativeEmbeds?.data ?? []) + record.promptEmbeds.data : record.promptEmbeds.data
            if states.data != expectedStates { await log.note("unet call \(call): encoder_hidden_states are not [uncond, cond] in order") }
            if let cond = record.timestepCond {
                guard case .float(let fed)? = feeds["timestep_cond"], GoldenCheck.maxAbsDiff(fed.data, cond) <= 1e-6 else {
                    await log.note("unet call \(call): timestep_cond missing or off")
                    return [output: try FloatTensor(shape: sample.shape, repeating: 0)]
                }
            }
            // Both CFG halves equal the guided prediction, so uncond + g * (cond - uncond) gives it back exactly.
            var data: [Float] = []
            for _ in 0..<batch { data += record.predictions[call] }
            return [output: try FloatTensor(shape: sample.shape, data: data)]
        default:
            guard case .float(let latent)? = feeds[component.inputs[0].name] else {
                throw BundleError.sessionFailed(component: component.name, detail: "no latent")
            }
            if GoldenCheck.maxAbsDiff(latent.data, record.vaeInput) > 0 { await log.note("vae_decoder: input is not final_latents / scaling") }
            return [output: record.decoded]
        }
    }
}
