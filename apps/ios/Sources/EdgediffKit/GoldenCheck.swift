import Foundation

/// One tensor of a golden folder as golden.json describes it.
public struct GoldenTensorEntry: Sendable, Equatable {
    public let name: String
    public let file: String
    public let dtype: String
    public let shape: [Int]
    public let sha256: String
}

/// The output of `edgediff bundle-golden` (format edgediff-golden/1): the prompt, seed and settings of one run,
/// token ids (plus tokenizer edge cases), the scheduler tables, and the tensors at each stage boundary; each
/// tensor file's sha256 is checked when it is read, and nothing it names may leave its folder.
public struct GoldenFiles: Sendable {
    public static let format = "edgediff-golden/1"

    public let dir: URL
    public let prompt: String
    public let negativePrompt: String
    public let seed: UInt64
    public let steps: Int
    public let guidance: Double
    public let scheduler: String
    public let latentShape: [Int]
    public let inputIds: [Int32]
    public let negativeInputIds: [Int32]?
    public let tokenizerCases: [(text: String, ids: [Int32])]
    public let tensors: [String: GoldenTensorEntry]
    /// The image size of this run (`size`, [height, width]); nil in golden files of one-size bundles.
    public let size: ImageSize?
    /// A bundle with several sizes: the golden folder of each other size (`sizes`, runtime/golden_sizes.py).
    public let otherSizes: [ImageSize: String]
    let tablesFile: String

    public init(dir: URL) throws {
        let file = dir.appendingPathComponent("golden.json")
        guard FileManager.default.fileExists(atPath: file.path) else { throw BundleError.missingFile(path: file.path) }
        let reader = ManifestReader(root: dir, verifyChecksums: false)
        let json = try reader.object(try JSONValue.read(file), key: "golden.json")
        let format = json["format"]?.stringValue
        guard format == GoldenFiles.format else { throw BundleError.unsupportedFormat(found: format) }
        func ints(_ value: JSONValue?, _ key: String) throws -> [Int32] {
            var out: [Int32] = []
            for item in try reader.array(value, key: key) {
                guard let number = item.intValue, let small = Int32(exactly: number) else {
                    throw BundleError.invalidManifest(key: "golden.json: \(key)", expected: "a list of integers")
                }
                out.append(small)
            }
            return out
        }
        self.dir = dir
        prompt = try reader.optionalString(json["prompt"], key: "prompt") ?? ""
        negativePrompt = try reader.optionalString(json["negative_prompt"], key: "negative_prompt") ?? ""
        guard let seedValue = try reader.optionalCount(json["seed"], key: "golden.json: seed"),
              let stepsValue = try reader.optionalCount(json["steps"], key: "golden.json: steps"),
              let guidanceValue = try reader.optionalNumber(json["guidance"], key: "golden.json: guidance") else {
            throw BundleError.invalidManifest(key: "golden.json: seed, steps, guidance", expected: "numbers")
        }
        seed = UInt64(seedValue)
        steps = stepsValue
        guidance = guidanceValue
        scheduler = try reader.string(json["scheduler"], key: "scheduler")
        latentShape = try ints(json["latent_shape"], "latent_shape").map { Int($0) }
        let tokens = try reader.object(json["tokens"], key: "tokens")
        inputIds = try ints(tokens["input_ids"], "tokens.input_ids")
        if let negative = tokens["negative_input_ids"], !negative.isNull {
            negativeInputIds = try ints(negative, "tokens.negative_input_ids")
        } else {
            negativeInputIds = nil
        }
        var cases: [(text: String, ids: [Int32])] = []
        for (index, item) in try reader.array(tokens["cases"], key: "tokens.cases").enumerated() {
            let entry = try reader.object(item, key: "tokens.cases[\(index)]")
            let text = try reader.optionalString(entry["text"], key: "tokens.cases[\(index)].text") ?? ""
            cases.append((text, try ints(entry["ids"], "tokens.cases[\(index)].ids")))
        }
        tokenizerCases = cases
        tablesFile = try reader.string(json["scheduler_tables"], key: "scheduler_tables")
        var entries: [String: GoldenTensorEntry] = [:]
        for (name, value) in try reader.object(json["tensors"], key: "tensors") {
            let entry = try reader.object(value, key: "tensors.\(name)")
            entries[name] = GoldenTensorEntry(
                name: name, file: try reader.string(entry["file"], key: "tensors.\(name).file"),
                dtype: try reader.string(entry["dtype"], key: "tensors.\(name).dtype"),
                shape: try ints(entry["shape"], "tensors.\(name).shape").map { Int($0) },
                sha256: try reader.string(entry["sha256"], key: "tensors.\(name).sha256"))
        }
        tensors = entries
        func pixelPair(_ value: JSONValue?, _ key: String) throws -> ImageSize {
            let pair = try ints(value, key)
            guard pair.count == 2, pair.allSatisfy({ $0 >= 8 }) else {
                throw BundleError.invalidManifest(key: "golden.json: \(key)", expected: "[height, width] in pixels")
            }
            return ImageSize(height: Int(pair[0]), width: Int(pair[1]))
        }
        if let value = json["size"], !value.isNull { size = try pixelPair(value, "size") } else { size = nil }
        var others: [ImageSize: String] = [:]
        if let value = json["sizes"], !value.isNull {
            for (index, item) in try reader.array(value, key: "sizes").enumerated() {
                let entry = try reader.object(item, key: "sizes[\(index)]")
                others[try pixelPair(entry["size"], "sizes[\(index)].size")] = try reader.string(entry["golden"], key: "sizes[\(index)].golden")
            }
        }
        otherSizes = others
    }

    /// The golden files of the run at `size`: this folder for its own size, else the one `sizes` names for it.
    public func atSize(_ wanted: ImageSize) throws -> GoldenFiles {
        if wanted == size || (size == nil && otherSizes.isEmpty) { return self }
        guard let relative = otherSizes[wanted] else {
            let covered = (size.map { [$0] } ?? []) + Array(otherSizes.keys)
            throw BundleError.unsupportedSize(size: wanted.name, detail: "these golden files cover \(ImageSize.describe(covered))")
        }
        return try GoldenFiles(dir: try BundleFiles.resolve(relative, in: dir))
    }

    /// The scheduler tables the golden run used (scheduler_tables.json).
    public func schedulerTables() throws -> SchedulerTables {
        try SchedulerTables.parseFile(try BundleFiles.resolve(tablesFile, in: dir))
    }

    public func has(_ name: String) -> Bool { tensors[name] != nil }

    public func floatTensor(_ name: String) throws -> FloatTensor {
        let entry = try self.entry(name)
        guard entry.dtype == "float32" else { throw BundleError.invalidTensor(name: name, detail: "dtype \(entry.dtype), expected float32") }
        return try FloatTensor.readF32(try checkedFile(entry), shape: entry.shape, name: name)
    }

    public func intTensor(_ name: String) throws -> IntTensor {
        let entry = try self.entry(name)
        guard entry.dtype == "int32" else { throw BundleError.invalidTensor(name: name, detail: "dtype \(entry.dtype), expected int32") }
        return try IntTensor.readI32(try checkedFile(entry), shape: entry.shape, name: name)
    }

    /// `latents_after_step_003`, `noise_pred_step_000`, ...: the per-step tensor names golden.py writes.
    public static func stepName(_ kind: String, _ index: Int) -> String {
        let digits = String(index)
        return kind + "_" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
    }

    func entry(_ name: String) throws -> GoldenTensorEntry {
        guard let entry = tensors[name] else { throw BundleError.invalidTensor(name: name, detail: "not in golden.json") }
        return entry
    }

    func checkedFile(_ entry: GoldenTensorEntry) throws -> URL {
        let relative = "tensors/" + entry.file
        let url = try BundleFiles.resolve(relative, in: dir)
        try BundleFiles.check(url, relative: relative, bytes: nil, sha256: entry.sha256, root: dir)
        return url
    }
}

/// One compared stage: `value` of `metric` against `limit` (max_abs and mismatches: at most the limit;
/// psnr_db: at least the limit).
public struct StageCheck: Sendable, Equatable, CustomStringConvertible {
    public let stage: String
    public let passed: Bool
    public let metric: String
    public let value: Double
    public let limit: Double
    public let detail: String

    public init(stage: String, passed: Bool, metric: String, value: Double, limit: Double, detail: String = "") {
        self.stage = stage
        self.passed = passed
        self.metric = metric
        self.value = value
        self.limit = limit
        self.detail = detail
    }

    public var description: String {
        let padded = stage.count < 28 ? stage + String(repeating: " ", count: 28 - stage.count) : stage
        return "\(padded) \(passed ? "ok   " : "DRIFT")  \(metric)=\(String(format: "%.4g", value)) (limit \(String(format: "%.4g", limit)))"
            + (detail.isEmpty ? "" : "  \(detail)")
    }
}

public struct GoldenReport: Sendable {
    public let checks: [StageCheck]

    public var passed: Bool { checks.allSatisfy(\.passed) }

    /// The first stage, in pipeline order, that left its tolerance: where to look.
    public var firstDrift: StageCheck? { checks.first { !$0.passed } }

    public func describe() -> String {
        let lines = checks.map(\.description).joined(separator: "\n")
        let verdict = firstDrift.map { "drift starts at \($0.stage)" } ?? "all \(checks.count) stages within tolerance"
        return lines + "\n" + verdict
    }
}

/// Tolerances per stage; the defaults are for a float32 bundle on the runtime the golden files came from. A Core ML
/// fp16 bundle on an iPhone needs looser ones (`GoldenTolerances.device`).
public struct GoldenTolerances: Sendable, Equatable {
    public var textEmbedsMaxAbs = 1e-4
    public var timestepCondMaxAbs = 1e-6
    public var noisePredMaxAbs = 1e-3
    public var latentsMaxAbs = 1e-3
    public var decodedPsnrDb = 40.0
    public var imagePsnrDb = 40.0

    public init() {}

    /// For fp16 weights and activations on the Neural Engine: stages agree to fp16 rounding, images to ~30 dB.
    public static var device: GoldenTolerances {
        var tol = GoldenTolerances()
        tol.textEmbedsMaxAbs = 5e-2
        tol.noisePredMaxAbs = 5e-2
        tol.latentsMaxAbs = 5e-2
        tol.decodedPsnrDb = 30
        tol.imagePsnrDb = 30
        return tol
    }
}

/// Compares one run (with intermediates kept) against golden files and names the stage that drifted: token ids
/// (exact), scheduler tables (exact), initial noise (bit-exact: the seed convention), text embeddings, guidance
/// embedding, every step's noise prediction and latents, the decoded tensor and the 8-bit image (PSNR).
public enum GoldenCheck {
    public static func compare(golden: GoldenFiles, result: GenerationResult, tables: SchedulerTables,
                               tokenizer: ClipTokenizer? = nil, tol: GoldenTolerances = GoldenTolerances()) throws -> GoldenReport {
        guard let run = result.intermediates else {
            throw BundleError.invalidTensor(name: "intermediates", detail: "generate with keepIntermediates: true first")
        }
        var checks: [StageCheck] = []
        checks.append(exact("tokens.input_ids", run.inputIds, golden.inputIds))
        if golden.negativeInputIds != nil || run.uncondInputIds != nil {
            checks.append(exact("tokens.negative_input_ids", run.uncondInputIds ?? [], golden.negativeInputIds ?? []))
        }
        if let tokenizer {
            let bad = golden.tokenizerCases.filter { tokenizer.encode($0.text) != $0.ids }
            checks.append(StageCheck(stage: "tokens.cases", passed: bad.isEmpty, metric: "mismatched_cases", value: Double(bad.count),
                                     limit: 0, detail: bad.first.map { "first: '\($0.text.prefix(40))'" } ?? ""))
        }
        checks.append(compareTables(tables, try golden.schedulerTables()))
        checks.append(maxAbs("initial_noise", run.initialNoise, try golden.floatTensor("initial_noise").data, 0))
        checks.append(maxAbs("text_encoder.prompt_embeds", run.promptEmbeds?.data, try golden.floatTensor("prompt_embeds").data, tol.textEmbedsMaxAbs))
        if golden.has("negative_prompt_embeds") {
            checks.append(maxAbs("text_encoder.negative_embeds", run.negativePromptEmbeds?.data,
                                 try golden.floatTensor("negative_prompt_embeds").data, tol.textEmbedsMaxAbs))
        }
        if golden.has("timestep_cond") {
            checks.append(maxAbs("timestep_cond", run.timestepCond, try golden.floatTensor("timestep_cond").data, tol.timestepCondMaxAbs))
        }
        for i in 0..<golden.steps {
            let predName = GoldenFiles.stepName("noise_pred_step", i)
            if golden.has(predName) {
                checks.append(maxAbs(GoldenFiles.stepName("unet.step", i), i < run.noisePredPerStep.count ? run.noisePredPerStep[i] : nil,
                                     try golden.floatTensor(predName).data, tol.noisePredMaxAbs))
            }
            checks.append(maxAbs(GoldenFiles.stepName("latents.step", i), i < run.latentsPerStep.count ? run.latentsPerStep[i] : nil,
                                 try golden.floatTensor(GoldenFiles.stepName("latents_after_step", i)).data, tol.latentsMaxAbs))
        }
        let goldenDecoded = try golden.floatTensor("decoded")
        checks.append(psnrCheck("vae_decoder.decoded", run.decoded?.data, goldenDecoded.data, 2, tol.decodedPsnrDb))
        let goldenImage = try TextToImage.latentsToImage(goldenDecoded)
        checks.append(psnrCheck("image", result.image.pixels.map { Float($0) }, goldenImage.pixels.map { Float($0) }, 255, tol.imagePsnrDb))
        return GoldenReport(checks: checks)
    }

    public static func compareTables(_ actual: SchedulerTables, _ expected: SchedulerTables) -> StageCheck {
        var problems: [String] = []
        if actual.className != expected.className { problems.append("class \(actual.className) vs \(expected.className)") }
        if actual.steps.count != expected.steps.count { problems.append("\(actual.steps.count) vs \(expected.steps.count) steps") }
        var worst = 0.0
        for (a, e) in zip(actual.steps, expected.steps) {
            let pairs: [([Double], [Double])] = [
                ([a.timestep, a.inputScale], [e.timestep, e.inputScale]), (a.convert, e.convert), (a.combine, e.combine),
                (a.update, e.update), (a.x0 ?? [], e.x0 ?? []),
            ]
            for (x, y) in pairs {
                guard x.count == y.count else {
                    problems.append("row shapes differ at timestep \(e.timestep)")
                    continue
                }
                for k in x.indices { worst = max(worst, abs(x[k] - y[k]) / max(1, abs(y[k]))) }
            }
            if a.push != e.push || a.baseIsSaved != e.baseIsSaved || a.saveSample != e.saveSample {
                problems.append("flags differ at timestep \(e.timestep)")
            }
        }
        return StageCheck(stage: "scheduler_tables", passed: problems.isEmpty && worst <= 1e-12, metric: "max_rel", value: worst,
                          limit: 1e-12, detail: problems.joined(separator: "; "))
    }

    static func exact(_ stage: String, _ actual: [Int32], _ expected: [Int32]) -> StageCheck {
        let length = max(actual.count, expected.count)
        let differing = (0..<length).filter { index in
            (index < actual.count ? actual[index] : nil) != (index < expected.count ? expected[index] : nil)
        }
        let detail = differing.first.map { index in
            let got = index < actual.count ? String(actual[index]) : "nothing"
            let want = index < expected.count ? String(expected[index]) : "nothing"
            return "first at index \(index): \(got) vs \(want)"
        } ?? ""
        return StageCheck(stage: stage, passed: differing.isEmpty, metric: "mismatches", value: Double(differing.count), limit: 0, detail: detail)
    }

    /// The largest absolute difference; a NaN anywhere, or arrays of different sizes, count as infinitely different.
    public static func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Double {
        guard a.count == b.count else { return .infinity }
        var worst = 0.0
        for i in 0..<min(a.count, b.count) {
            let d = abs(Double(a[i]) - Double(b[i]))
            if d.isNaN { return .infinity }
            worst = max(worst, d)
        }
        return worst
    }

    static func maxAbs(_ stage: String, _ actual: [Float]?, _ expected: [Float], _ limit: Double) -> StageCheck {
        guard let actual, actual.count == expected.count else {
            return StageCheck(stage: stage, passed: false, metric: "max_abs", value: .infinity, limit: limit,
                              detail: "missing or \(actual?.count ?? 0) values vs \(expected.count)")
        }
        let d = maxAbsDiff(actual, expected)
        return StageCheck(stage: stage, passed: d <= limit, metric: "max_abs", value: d, limit: limit)
    }

    /// PSNR in dB for data spanning `range`; identical data gives +infinity.
    public static func psnr(_ a: [Float], _ b: [Float], range: Double) -> Double {
        guard !a.isEmpty, a.count == b.count else { return -.infinity }
        var sum = 0.0
        for i in a.indices {
            let d = Double(a[i]) - Double(b[i])
            sum += d * d
        }
        let mse = sum / Double(a.count)
        if mse.isNaN { return -.infinity }
        return mse == 0 ? .infinity : 20 * log10(range / mse.squareRoot())
    }

    static func psnrCheck(_ stage: String, _ actual: [Float]?, _ expected: [Float], _ range: Double, _ limit: Double) -> StageCheck {
        guard let actual, actual.count == expected.count else {
            return StageCheck(stage: stage, passed: false, metric: "psnr_db", value: -.infinity, limit: limit,
                              detail: "missing or \(actual?.count ?? 0) values vs \(expected.count)")
        }
        let p = psnr(actual, expected, range: range)
        return StageCheck(stage: stage, passed: p >= limit, metric: "psnr_db", value: p, limit: limit)
    }
}
