import Foundation

/// Wall-clock milliseconds per stage of one image (edgediff/runtime/pipeline.py `StageTimings`).
///
/// `unetStepMs` has one entry per scheduler step (both CFG halves); `loadMs` is the time spent loading sessions
/// during this image (zero when they were already resident).
public struct StageTimings: Sendable, Equatable {
    public var loadMs: Double = 0
    public var tokenizeMs: Double = 0
    public var textEncoderMs: Double = 0
    public var unetStepMs: [Double] = []
    public var schedulerMs: Double = 0
    public var vaeDecoderMs: Double = 0
    public var totalMs: Double = 0

    public init() {}

    public var unetMs: Double { unetStepMs.reduce(0, +) }

    /// The same keys as the Python summary, so reports compare side by side.
    public func summary() -> [String: Double] {
        let sorted = unetStepMs.sorted()
        let median: Double
        if sorted.isEmpty {
            median = 0
        } else if sorted.count % 2 == 1 {
            median = sorted[sorted.count / 2]
        } else {
            median = (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        return [
            "load_ms": loadMs, "tokenize_ms": tokenizeMs, "text_encoder_ms": textEncoderMs, "unet_total_ms": unetMs,
            "unet_calls": Double(unetStepMs.count), "unet_step_median_ms": median, "unet_step_min_ms": sorted.first ?? 0,
            "unet_step_max_ms": sorted.last ?? 0, "scheduler_ms": schedulerMs, "vae_decoder_ms": vaeDecoderMs, "total_ms": totalMs,
        ]
    }

    public func describe() -> String {
        let s = summary()
        func ms(_ key: String, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", s[key] ?? 0) }
        return "tokenize \(ms("tokenize_ms", 1)) ms | text encoder \(ms("text_encoder_ms", 1)) ms | "
            + "unet \(unetStepMs.count) calls, \(ms("unet_total_ms")) ms (median \(ms("unet_step_median_ms", 1)) ms/call) | "
            + "scheduler \(ms("scheduler_ms", 1)) ms | vae decoder \(ms("vae_decoder_ms", 1)) ms | total \(ms("total_ms")) ms"
    }
}

/// An 8-bit RGB image, row-major HxWx3 (what diffusers' image processor returns).
public struct RgbImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let pixels: [UInt8]

    public func value(y: Int, x: Int, c: Int) -> UInt8 { pixels[(y * width + x) * 3 + c] }
}

/// Every stage boundary of one run, kept for the golden self-check (GoldenCheck).
public struct Intermediates: Sendable, Equatable {
    public var inputIds: [Int32] = []
    public var uncondInputIds: [Int32]?
    public var promptEmbeds: FloatTensor?
    public var negativePromptEmbeds: FloatTensor?
    public var initialNoise: [Float] = []
    public var initialLatents: [Float] = []
    public var timestepCond: [Float]?
    public var noisePredPerStep: [[Float]] = []
    public var stepNoise: [[Float]?] = []
    public var latentsPerStep: [[Float]] = []
    public var decoded: FloatTensor?

    public init() {}
}

/// One image plus what produced it.
public struct GenerationResult: Sendable {
    public let image: RgbImage
    public let seed: UInt64
    public let steps: Int
    public let guidance: Double
    public let scheduler: String
    public let timings: StageTimings
    public let intermediates: Intermediates?
}

/// Progress after each denoising step: (step index, step count, that step's UNet milliseconds).
public typealias StepCallback = @Sendable (Int, Int, Double) -> Void

/// Text -> image from a bundle over any InferenceSession, mirroring edgediff/runtime/pipeline.py
/// `BundlePipeline.generate` operation for operation (so the image matches the host at the same seed): tokenize;
/// encode the prompt (and the negative prompt when guidance is batched or run twice); initial latent = numpy's
/// float32 standard normal for `seed` times init_noise_sigma; per step: UNet (uncond + cond in one batch of 2, two
/// calls, or one call with the guidance scale embedded as `timestep_cond`), guidance mix, table step (noise drawn
/// from the same generator for LCM); VAE decode; round to uint8 as diffusers does.
///
/// Sessions come from a `SessionProvider`; when the memory plan says `oneAtATime`, each component is released
/// after its stage so only one model is resident.
public struct TextToImage: Sendable {
    public let manifest: BundleManifest
    public let tokenizer: ClipTokenizer
    public let sessions: any SessionProvider
    public let memoryPlan: MemoryPlan
    let textEncoderSpec: ComponentSpec
    let unetSpec: ComponentSpec
    let vaeDecoderSpec: ComponentSpec
    let unetBatch: Int?
    let batchedCfg: Bool
    let timeCondDim: Int?
    /// The size of the next images: the bundle's first until `useSize` picks another of its sizes.
    public private(set) var size: ImageSize

    /// The latent of one image at `size` (the sessions pick the graph shape or LiteRT signature from it).
    public var latentShape: [Int] { ImageSizes.latentShape(manifest, size: size) }

    public var defaultSteps: Int { manifest.pipeline.scheduler.numInferenceSteps }
    public var defaultGuidance: Double { manifest.pipeline.guidance.scale }

    /// Checks what a run needs before the first image: the three components with the inputs the loop feeds and
    /// a usable tokenizer. The memory plan defaults to one without a device budget (everything resident).
    public init(manifest: BundleManifest, sessions: any SessionProvider, memoryPlan: MemoryPlan? = nil,
                tokenizer: ClipTokenizer? = nil) throws {
        let unet = try manifest.component("unet")
        guard let sample = unet.input("sample") else {
            throw BundleError.invalidManifest(key: "components.unet.inputs", expected: "a tensor named 'sample'")
        }
        for name in ["timestep", "encoder_hidden_states"] where unet.input(name) == nil {
            throw BundleError.invalidManifest(key: "components.unet.inputs", expected: "a tensor named '\(name)'")
        }
        var timeCondDim: Int? = nil
        if let cond = unet.input("timestep_cond") {
            guard case .fixed(let dim)? = cond.shape.last, dim >= 4 else {
                throw BundleError.invalidManifest(key: "components.unet timestep_cond", expected: "a fixed last dimension of at least 4")
            }
            timeCondDim = dim
        }
        let unetBatch = sample.fixedDim(0)
        self.manifest = manifest
        self.sessions = sessions
        self.memoryPlan = try memoryPlan ?? MemoryPlan.plan(manifest: manifest, deviceBudgetMB: nil)
        self.tokenizer = try tokenizer ?? ClipTokenizer.fromManifest(manifest)
        self.textEncoderSpec = try manifest.component("text_encoder")
        self.unetSpec = unet
        self.vaeDecoderSpec = try manifest.component("vae_decoder")
        self.unetBatch = unetBatch
        self.batchedCfg = unetBatch.map { $0 == 2 } ?? manifest.pipeline.guidance.batchedCfg
        self.timeCondDim = timeCondDim
        self.size = manifest.pipeline.sizes.first ?? ImageSize(
            height: manifest.latentShape[2] * 8, width: manifest.latentShape[3] * 8)
    }

    /// Make the next images `width` x `height` (both nil: the bundle's first size). A size the bundle was not
    /// converted for is refused (`BundleError.unsupportedSize`) naming the sizes it makes; nothing changes then.
    @discardableResult
    public mutating func useSize(height: Int?, width: Int?) throws -> ImageSize {
        size = try ImageSizes.pick(manifest, height: height, width: width)
        return size
    }

    /// The manifest's tables when they fit the request; other step counts need tables the bundle lacks.
    public func scheduler(steps: Int? = nil) throws -> TableScheduler {
        let spec = manifest.pipeline.scheduler
        let count = steps ?? defaultSteps
        if let reason = spec.tablesError {
            throw BundleError.unsupportedScheduler(name: spec.className, reason: "the converter could not tabulate it (\(reason))")
        }
        guard let tables = spec.tables else {
            throw BundleError.unsupportedScheduler(
                name: spec.className, reason: "the bundle carries no scheduler tables; re-create it with edgediff convert")
        }
        guard tables.numInferenceSteps == count, tables.className == spec.className else {
            throw BundleError.unsupportedScheduler(
                name: spec.className,
                reason: "the bundle carries tables for \(tables.numInferenceSteps) steps, not \(count); "
                    + "use \(tables.numInferenceSteps) steps or convert with --set pipeline.num_inference_steps=\(count)")
        }
        return TableScheduler(tables: tables)
    }

    /// One image. `latents` (unscaled, of the latent shape) replaces the seeded initial draw.
    public func generate(
        prompt: String, seed: UInt64 = 0, steps: Int? = nil, guidance: Double? = nil, negativePrompt: String = "",
        latents: [Float]? = nil, keepIntermediates: Bool = false, onStep: StepCallback? = nil
    ) async throws -> GenerationResult {
        let total = Stopwatch()
        var timings = StageTimings()
        let g = guidance ?? defaultGuidance
        var sched = try scheduler(steps: steps)
        var keep = Intermediates()
        let shape = latentShape
        let count = try Tensor.elementCount(shape, name: "latent")

        var mark = Stopwatch()
        let ids = try self.ids(prompt)
        let doCfg = g > 1 && timeCondDim == nil
        let uncondIds: IntTensor? = try doCfg ? self.ids(negativePrompt) : nil
        timings.tokenizeMs = mark.lap()

        let textEncoder = try await acquire(textEncoderSpec, &timings)
        mark = Stopwatch()
        let condEmbeds = try await encode(ids, textEncoder)
        var uncondEmbeds: FloatTensor? = nil
        if let uncondIds { uncondEmbeds = try await encode(uncondIds, textEncoder) }
        timings.textEncoderMs = mark.lap()
        await releaseIfSequential(textEncoderSpec)

        var rng = Noise(seed: seed)
        let noise: [Float]
        if let latents {
            guard latents.count == count else {
                throw BundleError.invalidTensor(name: "latents", detail: "\(latents.count) values for shape \(Tensor.shapeString(shape))")
            }
            noise = latents
        } else {
            noise = rng.standardNormal(count: count)
        }
        let sigma = Float(sched.initNoiseSigma)
        var x = noise.map { $0 * sigma }
        let timeCond = try timeCondDim.map { try TextToImage.guidanceScaleEmbedding(g - 1, dim: $0) }
        if keepIntermediates {
            keep.inputIds = ids.data
            keep.uncondInputIds = uncondIds?.data
            keep.promptEmbeds = condEmbeds
            keep.negativePromptEmbeds = uncondEmbeds
            keep.initialNoise = noise
            keep.initialLatents = x
            keep.timestepCond = timeCond
        }

        let unet = try await acquire(unetSpec, &timings)
        sched.reset()
        for i in 0..<sched.size {
            try Task.checkCancellation()
            let t = sched.timesteps[i]
            mark = Stopwatch()
            let modelInput = sched.scaleModelInput(x, i)
            timings.schedulerMs += mark.lap()
            let noisePred = try await predictNoise(try FloatTensor(shape: shape, data: modelInput), t, condEmbeds, uncondEmbeds, g, timeCond, unet)
            let stepMs = mark.lap()
            timings.unetStepMs.append(stepMs)
            let stepNoise: [Float]? = sched.stepNeedsNoise(i) ? rng.standardNormal(count: count) : nil
            let next = try sched.step(noisePred, i, x, noise: stepNoise)
            timings.schedulerMs += mark.lap()
            if keepIntermediates {
                keep.noisePredPerStep.append(noisePred)
                keep.stepNoise.append(stepNoise)
                keep.latentsPerStep.append(next)
            }
            x = next
            onStep?(i, sched.size, stepMs)
        }
        await releaseIfSequential(unetSpec)

        let vaeDecoder = try await acquire(vaeDecoderSpec, &timings)
        mark = Stopwatch()
        let decoded = try await decode(x, vaeDecoder)
        let image = try TextToImage.latentsToImage(decoded)
        timings.vaeDecoderMs = mark.lap()
        await releaseIfSequential(vaeDecoderSpec)
        timings.totalMs = total.elapsed()
        if keepIntermediates { keep.decoded = decoded }
        return GenerationResult(image: image, seed: seed, steps: sched.size, guidance: g, scheduler: sched.className,
                                timings: timings, intermediates: keepIntermediates ? keep : nil)
    }

    // MARK: - stages

    func ids(_ text: String) throws -> IntTensor {
        try IntTensor(shape: [1, tokenizer.maxLength], data: tokenizer.encode(text), name: "input_ids")
    }

    func acquire(_ component: ComponentSpec, _ timings: inout StageTimings) async throws -> any InferenceSession {
        let clock = Stopwatch()
        let session = try await sessions.session(for: component)
        timings.loadMs += clock.elapsed()
        return session
    }

    func releaseIfSequential(_ component: ComponentSpec) async {
        if memoryPlan.strategy == .oneAtATime { await sessions.release(component.name) }
    }

    func output(_ session: any InferenceSession, _ feeds: [String: Tensor], _ name: String, _ component: String) async throws -> FloatTensor {
        guard let value = try await session.run(feeds)[name] else {
            throw BundleError.sessionFailed(component: component, detail: "the model returned no output '\(name)'")
        }
        return value
    }

    func encode(_ ids: IntTensor, _ session: any InferenceSession) async throws -> FloatTensor {
        try await output(session, [textEncoderSpec.inputs[0].name: .int(ids)], textEncoderSpec.outputs[0].name, "text_encoder")
    }

    func runUnet(_ latents: FloatTensor, _ t: Float, _ embeds: FloatTensor, _ cond: [Float]?,
                 _ session: any InferenceSession) async throws -> FloatTensor {
        let batch = latents.shape.first ?? 1
        var feeds: [String: Tensor] = [
            "sample": .float(latents),
            "timestep": .float(try FloatTensor(shape: [batch], repeating: t)),
            "encoder_hidden_states": .float(embeds),
        ]
        if let cond {
            var repeated: [Float] = []
            for _ in 0..<batch { repeated += cond }
            feeds["timestep_cond"] = .float(try FloatTensor(shape: [batch, cond.count], data: repeated))
        }
        let out = try await output(session, feeds, unetSpec.outputs[0].name, "unet")
        guard out.count == latents.count else {
            throw BundleError.invalidTensor(name: "unet output", detail: "shape \(out.shapeString()), expected \(latents.shapeString())")
        }
        return out
    }

    /// The guided model output for one step (uncond first, then cond, as diffusers batches them).
    func predictNoise(_ x: FloatTensor, _ t: Float, _ cond: FloatTensor, _ uncond: FloatTensor?, _ guidance: Double,
                      _ timeCond: [Float]?, _ session: any InferenceSession) async throws -> [Float] {
        guard let uncond else {
            if unetBatch == 2 {  // a UNet exported for batched CFG, run without guidance
                let out = try await runUnet(try .concat0([x, x]), t, try .concat0([cond, cond]), timeCond, session)
                return try out.slice0(from: 0, to: 1).data
            }
            return try await runUnet(x, t, cond, timeCond, session).data
        }
        let u: [Float]
        let c: [Float]
        if batchedCfg {
            let out = try await runUnet(try .concat0([x, x]), t, try .concat0([uncond, cond]), timeCond, session)
            u = try out.slice0(from: 0, to: 1).data
            c = try out.slice0(from: 1, to: 2).data
        } else {
            u = try await runUnet(x, t, uncond, timeCond, session).data
            c = try await runUnet(x, t, cond, timeCond, session).data
        }
        let scale = Float(guidance)
        var guided = [Float](repeating: 0, count: u.count)
        for i in guided.indices { guided[i] = u[i] + scale * (c[i] - u[i]) }
        return guided
    }

    func decode(_ latents: [Float], _ session: any InferenceSession) async throws -> FloatTensor {
        let s = Float(manifest.pipeline.vaeScalingFactor)
        let shift = Float(manifest.pipeline.vaeShiftFactor)
        let scaled = try FloatTensor(shape: latentShape, data: latents.map { $0 / s + shift })
        return try await output(session, [vaeDecoderSpec.inputs[0].name: .float(scaled)], vaeDecoderSpec.outputs[0].name, "vae_decoder")
    }

    /// LCM's guidance embedding of w = guidance - 1 (diffusers' get_guidance_scale_embedding), as the Python runtime
    /// computes it: the exponent in float32, exp / sin / cos in float64, each rounded once to float32.
    public static func guidanceScaleEmbedding(_ w: Double, dim: Int) throws -> [Float] {
        let half = dim / 2
        guard half >= 2 else {
            throw BundleError.invalidManifest(key: "components.unet timestep_cond", expected: "a size of at least 4")
        }
        let step = Float(log(10000.0)) / Float(half - 1)
        let scale = Float(w * 1000.0)
        var out = [Float](repeating: 0, count: dim)
        for i in 0..<half {
            let freq = Float(exp(Double(Float(i) * -step)))
            let e = Double(scale * freq)
            out[i] = Float(sin(e))
            out[half + i] = Float(cos(e))
        }
        return out
    }

    /// VAE output [1, 3, H, W] in [-1, 1] -> 8-bit RGB HxWx3, rounding half to even as numpy does.
    public static func latentsToImage(_ decoded: FloatTensor) throws -> RgbImage {
        guard decoded.shape.count == 4, decoded.shape[1] == 3 else {
            throw BundleError.invalidTensor(name: "vae_decoder output", detail: "expected [1, 3, H, W], got \(decoded.shapeString())")
        }
        let height = decoded.shape[2]
        let width = decoded.shape[3]
        let plane = height * width
        var pixels = [UInt8](repeating: 0, count: plane * 3)
        for channel in 0..<3 {
            for index in 0..<plane {
                var value = decoded.data[channel * plane + index] / 2 + 0.5
                value = value.isNaN ? 0 : min(max(value, 0), 1)  // a NaN pixel is black, never a crash
                pixels[index * 3 + channel] = UInt8((value * 255).rounded(.toNearestOrEven))
            }
        }
        return RgbImage(width: width, height: height, pixels: pixels)
    }
}

/// Milliseconds since creation, from the monotonic clock.
struct Stopwatch {
    private var start = ContinuousClock.now

    func elapsed() -> Double {
        Stopwatch.milliseconds(ContinuousClock.now - start)
    }

    /// Milliseconds since creation or the last lap; restarts the lap.
    mutating func lap() -> Double {
        let now = ContinuousClock.now
        defer { start = now }
        return Stopwatch.milliseconds(now - start)
    }

    static func milliseconds(_ duration: Duration) -> Double {
        let parts = duration.components
        return Double(parts.seconds) * 1000 + Double(parts.attoseconds) / 1e15
    }
}
