import Foundation

/// One row of the scheduler tables: how step i combines the latent and the model output.
///
/// The stepping rule (edgediff/runtime/schedulers.py):
///
///     model_input = x * input_scale                        fed to the UNet at `timestep`
///     base        = saved if base == "saved" else x        PNDM's second step restarts from an earlier latent
///     saved       = x                  (if save_sample)
///     d           = convert[0] * base + convert[1] * m     m: the (guided) model output; history keeps d
///     c           = combine[0] * d + combine[1] * history[-1] + combine[2] * history[-2] + ...
///     history.append(d)                (if push; keep the last history_size)
///     x0          = clip(x0[0] * base + x0[1] * m, -clip_range, clip_range)   (only if the row has x0)
///     x           = update[0] * base + update[1] * c + update[2] * x0 + update[3] * noise
public struct StepCoefficients: Sendable, Equatable {
    public let timestep: Double
    public let inputScale: Double
    public let convert: [Double]
    public let combine: [Double]
    public let push: Bool
    public let update: [Double]
    public let x0: [Double]?
    /// The step restarts from the saved sample (`base: "saved"`, PNDM) instead of the current one.
    public let baseIsSaved: Bool
    public let saveSample: Bool
}

/// The tables a bundle carries in `pipeline.scheduler.tables` (format edgediff-scheduler-tables/1): DDIM (any
/// spacing, trailing included), Euler, DPM-Solver++ 2M, LCM and PNDM all reduce to multiply-adds on the latent.
public struct SchedulerTables: Sendable, Equatable {
    public static let format = "edgediff-scheduler-tables/1"
    /// The diffusers classes the tables can express (edgediff/runtime/schedulers.py DEFAULTS).
    public static let knownClasses = [
        "DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "LCMScheduler", "PNDMScheduler",
        "EulerAncestralDiscreteScheduler", "UniPCMultistepScheduler", "TCDScheduler", "HeunDiscreteScheduler",
        "DEISMultistepScheduler", "DPMSolverSinglestepScheduler",
    ]

    public let className: String
    public let predictionType: String
    public let numInferenceSteps: Int
    public let initNoiseSigma: Double
    public let timesteps: [Double]
    public let historySize: Int
    public let clipRange: Double?
    public let needsNoise: Bool
    public let steps: [StepCoefficients]

    /// Parses and checks tables; `key` is where they sit (for messages), e.g. `pipeline.scheduler.tables`.
    public static func parse(_ json: JSONValue, key: String) throws -> SchedulerTables {
        let reader = ManifestReader(root: URL(fileURLWithPath: "/"), verifyChecksums: false)
        let node = try reader.object(json, key: key)
        let format = node["format"]?.stringValue
        let name = node["class_name"]?.stringValue ?? "(unnamed)"
        guard format == SchedulerTables.format else {
            throw BundleError.unsupportedScheduler(name: name, reason: "its tables have format \(format ?? "(none)"), this app reads \(SchedulerTables.format)")
        }
        guard knownClasses.contains(name) else {
            throw BundleError.unsupportedScheduler(name: name, reason: "not one of \(knownClasses.joined(separator: ", "))")
        }
        let rows = try reader.array(node["steps"], key: "\(key).steps")
        guard !rows.isEmpty else { throw BundleError.invalidManifest(key: "\(key).steps", expected: "a non-empty list of step rows") }
        var steps: [StepCoefficients] = []
        for (index, rowJSON) in rows.enumerated() {
            let rowKey = "\(key).steps[\(index)]"
            let row = try reader.object(rowJSON, key: rowKey)
            func numbers(_ field: String, _ sizes: ClosedRange<Int>, _ expected: String) throws -> [Double] {
                let items = try reader.array(row[field], key: "\(rowKey).\(field)")
                let values = items.compactMap { $0.doubleValue }.filter { $0.isFinite }
                guard values.count == items.count, sizes.contains(values.count) else {
                    throw BundleError.invalidManifest(key: "\(rowKey).\(field)", expected: expected)
                }
                return values
            }
            func number(_ field: String) throws -> Double {
                guard let value = try reader.optionalNumber(row[field], key: "\(rowKey).\(field)") else {
                    throw BundleError.invalidManifest(key: "\(rowKey).\(field)", expected: "a finite number")
                }
                return value
            }
            let base = try reader.optionalString(row["base"], key: "\(rowKey).base") ?? "sample"
            guard base == "sample" || base == "saved" else {
                throw BundleError.invalidManifest(key: "\(rowKey).base", expected: "'sample' or 'saved'")
            }
            var x0: [Double]? = nil
            if let x0JSON = row["x0"], !x0JSON.isNull {
                x0 = try numbers("x0", 2...2, "2 numbers or null")
            }
            guard let push = try reader.optionalBool(row["push"], key: "\(rowKey).push") else {
                throw BundleError.invalidManifest(key: "\(rowKey).push", expected: "true or false")
            }
            steps.append(StepCoefficients(
                timestep: try number("timestep"), inputScale: try number("input_scale"),
                convert: try numbers("convert", 2...2, "2 numbers"), combine: try numbers("combine", 1...64, "at least 1 number"),
                push: push, update: try numbers("update", 4...4, "4 numbers"), x0: x0, baseIsSaved: base == "saved",
                saveSample: try reader.optionalBool(row["save_sample"], key: "\(rowKey).save_sample") ?? false))
        }
        guard let count = try reader.optionalCount(node["num_inference_steps"], key: "\(key).num_inference_steps"), count >= 1 else {
            throw BundleError.invalidManifest(key: "\(key).num_inference_steps", expected: "a positive integer")
        }
        let timesteps = try reader.array(node["timesteps"], key: "\(key).timesteps").map { $0.doubleValue }
        guard timesteps.count == steps.count, zip(timesteps, steps).allSatisfy({ $0.0 == $0.1.timestep }) else {
            throw BundleError.invalidManifest(key: "\(key).timesteps", expected: "the timesteps of the step rows, in order")
        }
        guard let history = try reader.optionalCount(node["history_size"], key: "\(key).history_size"), history <= 8 else {
            throw BundleError.invalidManifest(key: "\(key).history_size", expected: "an integer in 0..8")
        }
        guard let sigma = try reader.optionalNumber(node["init_noise_sigma"], key: "\(key).init_noise_sigma") else {
            throw BundleError.invalidManifest(key: "\(key).init_noise_sigma", expected: "a finite number")
        }
        return SchedulerTables(
            className: name, predictionType: try reader.optionalString(node["prediction_type"], key: "\(key).prediction_type") ?? "epsilon",
            numInferenceSteps: count, initNoiseSigma: sigma, timesteps: steps.map(\.timestep), historySize: history,
            clipRange: try reader.optionalNumber(node["clip_range"], key: "\(key).clip_range"),
            needsNoise: try reader.optionalBool(node["needs_noise"], key: "\(key).needs_noise") ?? false, steps: steps)
    }

    /// Tables from a standalone JSON file (the golden files' scheduler_tables.json).
    public static func parseFile(_ url: URL) throws -> SchedulerTables {
        guard FileManager.default.fileExists(atPath: url.path) else { throw BundleError.missingFile(path: url.path) }
        return try parse(try JSONValue.read(url), key: url.lastPathComponent)
    }
}

/// Runs a scheduler from its tables alone, in float32 exactly as numpy rounds it (edgediff/runtime/schedulers.py
/// `TableScheduler`): every coefficient is rounded to float32 first, every product and sum is one float32 op.
///
/// Call `reset()` before each image; then for each step i: `scaleModelInput(x, i)`, run the model,
/// `x = try step(modelOutput, i, x, noise:)`.
public struct TableScheduler: Sendable {
    public let tables: SchedulerTables
    /// The UNet's timestep per step, as float32 (what the model is fed).
    public let timesteps: [Float]
    private var history: [[Float]] = []
    private var saved: [Float]? = nil

    public init(tables: SchedulerTables) {
        self.tables = tables
        self.timesteps = tables.steps.map { Float($0.timestep) }
    }

    public var className: String { tables.className }
    public var steps: [StepCoefficients] { tables.steps }
    public var initNoiseSigma: Double { tables.initNoiseSigma }
    public var size: Int { tables.steps.count }

    public mutating func reset() {
        history = []
        saved = nil
    }

    public func stepNeedsNoise(_ index: Int) -> Bool { steps[index].update[3] != 0 }

    public func scaleModelInput(_ sample: [Float], _ index: Int) -> [Float] {
        let scale = steps[index].inputScale
        return scale == 1 ? sample : TableScheduler.scaled(scale, sample)
    }

    /// The latent after step `index`. `noise` (a standard-normal draw of the latent's size) is needed only where
    /// `stepNeedsNoise(index)`.
    public mutating func step(_ modelOutput: [Float], _ index: Int, _ sample: [Float], noise: [Float]? = nil) throws -> [Float] {
        guard index >= 0, index < size else {
            throw BundleError.unsupportedScheduler(name: className, reason: "step \(index) is outside its \(size) steps")
        }
        guard modelOutput.count == sample.count else {
            throw BundleError.invalidTensor(name: "model output", detail: "\(modelOutput.count) values for a latent of \(sample.count)")
        }
        let row = steps[index]
        let base: [Float]
        if row.baseIsSaved {
            guard let saved else {
                throw BundleError.unsupportedScheduler(name: className, reason: "step \(index) restarts from a saved sample but none was saved; step in order from reset()")
            }
            base = saved
        } else {
            base = sample
        }
        if row.saveSample { saved = sample }
        let d = TableScheduler.axpby(row.convert[0], base, row.convert[1], modelOutput)
        var combined = row.combine[0] != 1 ? TableScheduler.scaled(row.combine[0], d) : d
        for k in 1..<row.combine.count {
            guard k <= history.count else {
                throw BundleError.unsupportedScheduler(name: className, reason: "step \(index) needs \(k) earlier outputs; step in order from reset()")
            }
            let weight = Float(row.combine[k])
            let earlier = history[history.count - k]
            for i in combined.indices { combined[i] = combined[i] + weight * earlier[i] }
        }
        if row.push {
            history.append(d)
            if tables.historySize > 0 {
                if history.count > tables.historySize { history.removeFirst(history.count - tables.historySize) }
            } else {
                history.removeAll()
            }
        }
        var out = TableScheduler.axpby(row.update[0], base, row.update[1], combined)
        if let x0Row = row.x0 {
            var x0 = TableScheduler.axpby(x0Row[0], base, x0Row[1], modelOutput)
            if let range = tables.clipRange {
                let low = Float(-range)
                let high = Float(range)
                for i in x0.indices { x0[i] = x0[i] < low ? low : (x0[i] > high ? high : x0[i]) }  // NaN stays NaN, as np.clip
            }
            let weight = Float(row.update[2])
            for i in out.indices { out[i] = out[i] + weight * x0[i] }
        }
        if row.update[3] != 0 {
            guard let noise else {
                throw BundleError.unsupportedScheduler(name: className, reason: "step \(index) injects noise; pass a standard-normal draw")
            }
            guard noise.count == out.count else {
                throw BundleError.invalidTensor(name: "step noise", detail: "\(noise.count) values for a latent of \(out.count)")
            }
            let weight = Float(row.update[3])
            for i in out.indices { out[i] = out[i] + weight * noise[i] }
        }
        return out
    }

    static func scaled(_ a: Double, _ x: [Float]) -> [Float] {
        let factor = Float(a)
        return x.map { factor * $0 }
    }

    /// a*x + b*y in float32, skipping a zero term (so 0 * inf never appears), as schedulers.py `_axpby`.
    static func axpby(_ a: Double, _ x: [Float], _ b: Double, _ y: [Float]) -> [Float] {
        if a == 0 { return scaled(b, y) }
        if b == 0 { return scaled(a, x) }
        let fa = Float(a)
        let fb = Float(b)
        var out = [Float](repeating: 0, count: x.count)
        for i in out.indices { out[i] = fa * x[i] + fb * y[i] }
        return out
    }
}
