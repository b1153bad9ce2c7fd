import Foundation

/// One dimension of a tensor shape: a fixed size, or a symbolic name for a dynamic axis.
public enum TensorDimension: Sendable, Equatable {
    case fixed(Int)
    case symbolic(String)
}

/// One named input or output of a model file.
public struct TensorSpec: Sendable, Equatable {
    public static let dtypes: Set<String> = ["float32", "float", "float16", "half", "float64", "double", "int64", "int32", "int8", "uint8", "bool"]

    public let name: String
    public let shape: [TensorDimension]
    public let dtype: String

    public init(name: String, shape: [TensorDimension], dtype: String = "float32") {
        self.name = name
        self.shape = shape
        self.dtype = dtype
    }

    /// The size of `axis` if the model fixes it (a positive integer), else nil (as the Python runtime's `fixed_dim`).
    public func fixedDim(_ axis: Int) -> Int? {
        guard axis >= 0, axis < shape.count, case .fixed(let size) = shape[axis], size > 0 else { return nil }
        return size
    }

    /// The shape when every axis is fixed.
    public var fixedShape: [Int]? {
        var dims: [Int] = []
        for axis in shape.indices {
            guard let size = fixedDim(axis) else { return nil }
            dims.append(size)
        }
        return dims
    }
}

/// One model file of a component; a component split into chunks chains them by tensor name.
public struct ChunkSpec: Sendable, Equatable {
    /// The path as the manifest writes it, relative to the bundle folder.
    public let relativePath: String
    /// The checked location inside the bundle folder.
    public let file: URL
    public let inputs: [TensorSpec]
    public let outputs: [TensorSpec]
    public let sha256: String?
    public let bytes: Int?
}

/// A model component (text_encoder, unet, vae_decoder, ...) as the manifest describes it.
public struct ComponentSpec: Sendable, Equatable {
    public let name: String
    public let inputs: [TensorSpec]
    public let outputs: [TensorSpec]
    public let chunks: [ChunkSpec]

    public func input(_ name: String) -> TensorSpec? { inputs.first { $0.name == name } }

    /// Bytes of every file of the component (what loading it costs at least).
    public var bytes: Int { chunks.reduce(0) { $0 + ($1.bytes ?? 0) } }
}

/// `pipeline.guidance`: classifier-free guidance as the bundle's UNet expects it.
public struct GuidanceSpec: Sendable, Equatable {
    public let scale: Double
    /// The UNet takes the unconditional and conditional halves as one batch of two.
    public let batchedCfg: Bool
    /// The guidance scale is an input of the UNet (`timestep_cond`, LCM-style students).
    public let embedded: Bool
}

/// `pipeline.scheduler`: the scheduler's name and the precomputed tables a device runs (devices run tables;
/// they do not compute them).
public struct SchedulerSpec: Sendable, Equatable {
    public let className: String
    public let numInferenceSteps: Int
    public let tables: SchedulerTables?
    /// Why the converter could not tabulate this scheduler (`tables_error`), when it could not.
    public let tablesError: String?
}

/// `pipeline`: how the components make an image.
public struct PipelineSpec: Sendable, Equatable {
    public let latentShape: [Int]
    public let height: Int?
    public let width: Int?
    public let vaeScalingFactor: Double
    public let vaeShiftFactor: Double
    public let guidance: GuidanceSpec
    public let scheduler: SchedulerSpec
    /// Every size the bundle makes, the first = height x width (`pipeline.sizes`; ImageSizes.swift).
    public var sizes: [ImageSize] = []
}

/// `tokenizer`: where the CLIP files are, plus the special-token overrides the manifest may carry.
public struct TokenizerSpec: Sendable, Equatable {
    public let vocab: URL
    public let merges: URL
    public let maxLength: Int
    public let config: URL?
    public let overrides: [String: String]
}

/// `memory` (edgediff/bundle.py `memory_entry`): what the bundle needs, host-measured, and for a device target with
/// a budget the loading plan. The Kotlin twin (Manifest.kt `MemorySpec`) has the same names.
///
/// `peak_mb`: the peak with every component resident; `components`: each component's own peak; `budget_mb`: the
/// target's `memory_budget_mb` (targets/iphone-15-pro.toml); `target`: its name; `plan`: "all resident",
/// "sequential" or "does not fit" (`MemoryPlan` follows it); `note`: why, for the user.
public struct MemorySpec: Sendable, Equatable {
    public static let allResident = "all resident"
    public static let sequential = "sequential"
    public static let doesNotFit = "does not fit"
    public static let plans = [allResident, sequential, doesNotFit]

    public let peakMB: Double?
    public let componentPeakMB: [String: Double]
    public let budgetMB: Double?
    public let target: String?
    public var plan: String? = nil
    public var note: String? = nil
}

/// A bundle's manifest.json, parsed and checked: the keys and types of the bundle schema, every path inside the
/// bundle folder, every model file present with its recorded size and sha256 (a `.mlpackage` folder hashed the
/// way edgediff/bundle.py does). Everything goes wrong as a `BundleError`; `load` never returns a half-checked bundle.
public struct BundleManifest: Sendable {
    public static let formatV1 = "edgediff-bundle/1"
    public static let formatV2 = "edgediff-bundle/2"
    public static let formats = [formatV1, formatV2]
    public static let backends = ["onnxruntime", "litert", "coreml"]
    public static let precisions = ["fp32", "fp16", "int8"]
    public static let requiredComponents = ["text_encoder", "unet", "vae_decoder"]

    public let root: URL
    public let format: String
    public let backend: String
    public let precision: String
    public let edgediffVersion: String?
    public let components: [String: ComponentSpec]
    public let pipeline: PipelineSpec
    public let tokenizer: TokenizerSpec
    public let memory: MemorySpec?
    /// sha256 of manifest.json itself (the benchmark report names the bundle by it).
    public let manifestSha256: String
    public let raw: JSONValue

    public var latentShape: [Int] { pipeline.latentShape }

    public func component(_ name: String) throws -> ComponentSpec {
        guard let spec = components[name] else {
            throw BundleError.missingComponent(component: name, have: Array(components.keys))
        }
        return spec
    }

    /// Refuses a bundle that cannot fit `budgetMB` even loading one component at a time (see `MemoryPlan`).
    public func checkMemoryBudget(budgetMB: Double) throws {
        _ = try MemoryPlan.plan(manifest: self, deviceBudgetMB: budgetMB)
    }

    /// Reads `dir/manifest.json` (or the manifest file itself) and checks the whole bundle; with `verifyChecksums`
    /// every model file is hashed (seconds for a large UNet; pass false only to re-open a bundle checked before).
    public static func load(_ url: URL, verifyChecksums: Bool = true) throws -> BundleManifest {
        let manifestURL = url.lastPathComponent == "manifest.json" ? url : url.appendingPathComponent("manifest.json")
        let root = manifestURL.deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: manifestURL.path) else {
            throw BundleError.missingFile(path: manifestURL.path)
        }
        let bytes: Data
        do {
            bytes = try Data(contentsOf: manifestURL)
        } catch {
            throw BundleError.unreadableFile(path: manifestURL.path, reason: error.localizedDescription)
        }
        let (raw, hadNonFinite) = try JSONValue.parseReportingNonFinite(bytes, file: "manifest.json")
        let reader = ManifestReader(root: root, verifyChecksums: verifyChecksums)
        return try reader.manifest(raw, hadNonFinite: hadNonFinite, manifestSha256: SHA256.hex(of: bytes))
    }
}

/// Walks the manifest JSON, turning every wrong key or type into `invalidManifest` with its dotted path.
struct ManifestReader {
    let root: URL
    let verifyChecksums: Bool

    func manifest(_ raw: JSONValue, hadNonFinite: Bool, manifestSha256: String) throws -> BundleManifest {
        guard let top = raw.objectValue else { throw BundleError.invalidManifest(key: "(document)", expected: "a JSON object") }
        let formatText = top["format"]?.stringValue
        guard let format = formatText, BundleManifest.formats.contains(format) else {
            throw BundleError.unsupportedFormat(found: formatText ?? top["format"].flatMap { $0.isNull ? nil : $0.serialized(indent: 0) })
        }
        if format == BundleManifest.formatV2, hadNonFinite {
            throw BundleError.invalidManifest(key: "(document)", expected: "strict JSON (edgediff-bundle/2 has no NaN or Infinity)")
        }
        let version: String?
        if format == BundleManifest.formatV2 {
            version = try string(top["edgediff_version"], key: "edgediff_version")
        } else {
            version = try optionalString(top["edgediff_version"], key: "edgediff_version")
        }
        let backend = try string(top["backend"], key: "backend")
        guard BundleManifest.backends.contains(backend) else {
            throw BundleError.invalidManifest(key: "backend", expected: "one of \(BundleManifest.backends.joined(separator: ", "))")
        }
        let precision = try optionalString(top["precision"], key: "precision") ?? "fp32"
        guard BundleManifest.precisions.contains(precision) else {
            throw BundleError.invalidManifest(key: "precision", expected: "one of \(BundleManifest.precisions.joined(separator: ", "))")
        }
        var components: [String: ComponentSpec] = [:]
        for (name, entry) in try object(top["components"], key: "components") {
            components[name] = try component(name, entry)
        }
        for name in BundleManifest.requiredComponents where components[name] == nil {
            throw BundleError.missingComponent(component: name, have: Array(components.keys))
        }
        return BundleManifest(
            root: root,
            format: format,
            backend: backend,
            precision: precision,
            edgediffVersion: version,
            components: components,
            pipeline: try pipeline(top["pipeline"]),
            tokenizer: try tokenizer(top["tokenizer"]),
            memory: try memory(top["memory"]),
            manifestSha256: manifestSha256,
            raw: raw
        )
    }

    // MARK: sections

    func component(_ name: String, _ entry: JSONValue) throws -> ComponentSpec {
        let key = "components.\(name)"
        let data = try object(entry, key: key)
        var inputs = try tensorSpecs(data["inputs"], key: "\(key).inputs", required: false)
        var outputs = try tensorSpecs(data["outputs"], key: "\(key).outputs", required: false)
        var chunks: [ChunkSpec] = []
        let chunkList = try optionalArray(data["chunks"], key: "\(key).chunks") ?? []
        if !chunkList.isEmpty {
            for (index, chunkJSON) in chunkList.enumerated() {
                let chunkKey = "\(key).chunks[\(index)]"
                let chunk = try object(chunkJSON, key: chunkKey)
                let chunkInputs = try tensorSpecs(chunk["inputs"], key: "\(chunkKey).inputs", required: true)
                let chunkOutputs = try tensorSpecs(chunk["outputs"], key: "\(chunkKey).outputs", required: true)
                chunks.append(try chunkSpec(chunk, key: chunkKey, inputs: chunkInputs, outputs: chunkOutputs))
            }
        } else {
            guard data["file"] != nil else {
                throw BundleError.invalidManifest(key: "\(key).file", expected: "a file name (or a chunks list)")
            }
            chunks.append(try chunkSpec(data, key: key, inputs: inputs, outputs: outputs))
        }
        if inputs.isEmpty, let first = chunks.first { inputs = first.inputs }
        if outputs.isEmpty, let last = chunks.last { outputs = last.outputs }
        guard !inputs.isEmpty else { throw BundleError.invalidManifest(key: "\(key).inputs", expected: "a non-empty list of tensors") }
        guard !outputs.isEmpty else { throw BundleError.invalidManifest(key: "\(key).outputs", expected: "a non-empty list of tensors") }
        return ComponentSpec(name: name, inputs: inputs, outputs: outputs, chunks: chunks)
    }

    /// A model file entry with its side files (e.g. ONNX external weights); `bytes` then counts the side files too,
    /// so only the checksum applies to the model file (as edgediff/runtime/manifest.py `_check_entry`).
    func chunkSpec(_ entry: [String: JSONValue], key: String, inputs: [TensorSpec], outputs: [TensorSpec]) throws -> ChunkSpec {
        let extras = try optionalArray(entry["extra_files"], key: "\(key).extra_files") ?? []
        for (index, extraJSON) in extras.enumerated() {
            let extraKey = "\(key).extra_files[\(index)]"
            _ = try checkedFile(try object(extraJSON, key: extraKey), key: extraKey, checkSize: true)
        }
        let file = try checkedFile(entry, key: key, checkSize: extras.isEmpty)
        return ChunkSpec(relativePath: try string(entry["file"], key: "\(key).file"), file: file, inputs: inputs, outputs: outputs,
                         sha256: try optionalSHA(entry["sha256"], key: "\(key).sha256"),
                         bytes: try optionalCount(entry["bytes"], key: "\(key).bytes"))
    }

    func checkedFile(_ entry: [String: JSONValue], key: String, checkSize: Bool) throws -> URL {
        let relative = try string(entry["file"], key: "\(key).file")
        let sha = try optionalSHA(entry["sha256"], key: "\(key).sha256")
        if sha == nil, verifyChecksums {  // a file without its checksum cannot be checked (as edgediff/contract.py)
            throw BundleError.invalidManifest(key: "\(key).sha256", expected: "a lower-case hex sha256 (64 characters)")
        }
        let size = try optionalCount(entry["bytes"], key: "\(key).bytes")
        let url = try BundleFiles.resolve(relative, in: root)
        try BundleFiles.check(url, relative: relative, bytes: checkSize ? size : nil, sha256: verifyChecksums ? sha : nil, root: root)
        return url
    }

    func pipeline(_ value: JSONValue?) throws -> PipelineSpec {
        let data = try object(value, key: "pipeline")
        var latentShape: [Int] = []
        for dim in try array(data["latent_shape"], key: "pipeline.latent_shape") {
            latentShape.append(dim.intValue ?? 0)
        }
        guard latentShape.count == 4, latentShape.allSatisfy({ $0 > 0 }), latentShape[0] == 1 else {
            throw BundleError.invalidManifest(key: "pipeline.latent_shape", expected: "[1, channels, height, width] with positive sizes")
        }
        _ = try Tensor.elementCount(latentShape, name: "latent")
        let scaling = try optionalNumber(data["vae_scaling_factor"], key: "pipeline.vae_scaling_factor") ?? 0.18215
        guard scaling > 0 else { throw BundleError.invalidManifest(key: "pipeline.vae_scaling_factor", expected: "a positive number") }
        let guidanceJSON = try optionalObject(data["guidance"], key: "pipeline.guidance") ?? [:]
        let guidance = GuidanceSpec(
            scale: try optionalNumber(guidanceJSON["scale"], key: "pipeline.guidance.scale") ?? 7.5,
            batchedCfg: try optionalBool(guidanceJSON["batched_cfg"], key: "pipeline.guidance.batched_cfg") ?? true,
            embedded: try optionalBool(guidanceJSON["embedded"], key: "pipeline.guidance.embedded") ?? false)
        let schedulerJSON = try object(data["scheduler"], key: "pipeline.scheduler")
        let className = try string(schedulerJSON["class_name"], key: "pipeline.scheduler.class_name")
        guard SchedulerTables.knownClasses.contains(className) else {
            throw BundleError.unsupportedScheduler(name: className, reason: "not one of \(SchedulerTables.knownClasses.joined(separator: ", "))")
        }
        var tables: SchedulerTables? = nil
        if let tablesJSON = schedulerJSON["tables"], !tablesJSON.isNull {
            tables = try SchedulerTables.parse(tablesJSON, key: "pipeline.scheduler.tables")
        }
        let steps = try optionalCount(schedulerJSON["num_inference_steps"], key: "pipeline.scheduler.num_inference_steps")
            ?? tables?.numInferenceSteps ?? 25
        guard steps >= 1 else {
            throw BundleError.invalidManifest(key: "pipeline.scheduler.num_inference_steps", expected: "a positive integer")
        }
        let scheduler = SchedulerSpec(
            className: className, numInferenceSteps: steps, tables: tables,
            tablesError: try optionalString(schedulerJSON["tables_error"], key: "pipeline.scheduler.tables_error"))
        let height = try optionalCount(data["height"], key: "pipeline.height")
        let width = try optionalCount(data["width"], key: "pipeline.width")
        return PipelineSpec(
            latentShape: latentShape, height: height, width: width, vaeScalingFactor: scaling,
            vaeShiftFactor: try optionalNumber(data["vae_shift_factor"], key: "pipeline.vae_shift_factor") ?? 0,
            guidance: guidance, scheduler: scheduler,
            sizes: try ImageSizes.parse(data["sizes"], latent: latentShape, height: height, width: width))
    }

    func tokenizer(_ value: JSONValue?) throws -> TokenizerSpec {
        let data = try object(value, key: "tokenizer")
        let maxLength = try optionalCount(data["max_length"], key: "tokenizer.max_length") ?? 77
        guard (2...4096).contains(maxLength) else {
            throw BundleError.invalidManifest(key: "tokenizer.max_length", expected: "an integer in 2..4096")
        }
        var overrides: [String: String] = [:]
        for role in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let text = try optionalString(data[role], key: "tokenizer.\(role)") { overrides[role] = text }
        }
        var config: URL? = nil
        if let relative = try optionalString(data["config"], key: "tokenizer.config") {
            let url = try BundleFiles.resolve(relative, in: root)
            if FileManager.default.fileExists(atPath: url.path) { config = url }
        }
        return TokenizerSpec(vocab: try tokenizerFile(data, "vocab"), merges: try tokenizerFile(data, "merges"),
                             maxLength: maxLength, config: config, overrides: overrides)
    }

    func tokenizerFile(_ data: [String: JSONValue], _ name: String) throws -> URL {
        let relative = try string(data[name], key: "tokenizer.\(name)")
        let url = try BundleFiles.resolve(relative, in: root)
        try BundleFiles.check(url, relative: relative, bytes: nil, sha256: nil, root: root)
        return url
    }

    func memory(_ value: JSONValue?) throws -> MemorySpec? {
        guard let value, !value.isNull else { return nil }
        let data = try object(value, key: "memory")
        var perComponent: [String: Double] = [:]
        for (name, entry) in try optionalObject(data["components"], key: "memory.components") ?? [:] {
            guard let megabytes = entry.doubleValue, megabytes.isFinite, megabytes >= 0 else {
                throw BundleError.invalidManifest(key: "memory.components.\(name)", expected: "a non-negative number of MB")
            }
            perComponent[name] = megabytes
        }
        let peak = try optionalNumber(data["peak_mb"], key: "memory.peak_mb")
        if let peak, peak < 0 { throw BundleError.invalidManifest(key: "memory.peak_mb", expected: "a non-negative number of MB") }
        let budget = try optionalNumber(data["budget_mb"], key: "memory.budget_mb")
        if let budget, budget <= 0 { throw BundleError.invalidManifest(key: "memory.budget_mb", expected: "a positive number of MB") }
        let plan = try optionalString(data["plan"], key: "memory.plan")
        if let plan, !MemorySpec.plans.contains(plan) {
            throw BundleError.invalidManifest(key: "memory.plan", expected: "one of " + MemorySpec.plans.map { "'\($0)'" }.joined(separator: ", "))
        }
        return MemorySpec(peakMB: peak, componentPeakMB: perComponent, budgetMB: budget,
                          target: try optionalString(data["target"], key: "memory.target"), plan: plan,
                          note: try optionalString(data["note"], key: "memory.note"))
    }

    func tensorSpecs(_ value: JSONValue?, key: String, required: Bool) throws -> [TensorSpec] {
        guard let value, !value.isNull else {
            if required { throw BundleError.invalidManifest(key: key, expected: "a list of {name, shape, dtype}") }
            return []
        }
        var specs: [TensorSpec] = []
        for (index, item) in try array(value, key: key).enumerated() {
            let itemKey = "\(key)[\(index)]"
            let spec = try object(item, key: itemKey)
            var shape: [TensorDimension] = []
            for (axis, dim) in (try optionalArray(spec["shape"], key: "\(itemKey).shape") ?? []).enumerated() {
                if let size = dim.intValue, size >= 0 {  // edgediff/contract.py refuses -1: a dynamic axis is a name
                    shape.append(.fixed(size))
                } else if let symbol = dim.stringValue {
                    shape.append(.symbolic(symbol))
                } else {
                    throw BundleError.invalidManifest(key: "\(itemKey).shape[\(axis)]", expected: "a dimension (integer >= 0 or a name)")
                }
            }
            let dtype = (try optionalString(spec["dtype"], key: "\(itemKey).dtype") ?? "float32").lowercased()
            guard TensorSpec.dtypes.contains(dtype) else {
                throw BundleError.invalidManifest(key: "\(itemKey).dtype", expected: "one of \(TensorSpec.dtypes.sorted().joined(separator: ", "))")
            }
            specs.append(TensorSpec(name: try string(spec["name"], key: "\(itemKey).name"), shape: shape, dtype: dtype))
        }
        return specs
    }

    // MARK: typed getters

    func object(_ value: JSONValue?, key: String) throws -> [String: JSONValue] {
        guard let members = value?.objectValue else { throw BundleError.invalidManifest(key: key, expected: "an object") }
        return members
    }

    func optionalObject(_ value: JSONValue?, key: String) throws -> [String: JSONValue]? {
        guard let value, !value.isNull else { return nil }
        return try object(value, key: key)
    }

    func array(_ value: JSONValue?, key: String) throws -> [JSONValue] {
        guard let items = value?.arrayValue else { throw BundleError.invalidManifest(key: key, expected: "a list") }
        return items
    }

    func optionalArray(_ value: JSONValue?, key: String) throws -> [JSONValue]? {
        guard let value, !value.isNull else { return nil }
        return try array(value, key: key)
    }

    func string(_ value: JSONValue?, key: String) throws -> String {
        guard let text = value?.stringValue, !text.isEmpty else { throw BundleError.invalidManifest(key: key, expected: "a non-empty string") }
        return text
    }

    func optionalString(_ value: JSONValue?, key: String) throws -> String? {
        guard let value, !value.isNull else { return nil }
        guard let text = value.stringValue else { throw BundleError.invalidManifest(key: key, expected: "a string") }
        return text
    }

    func optionalNumber(_ value: JSONValue?, key: String) throws -> Double? {
        guard let value, !value.isNull else { return nil }
        guard let number = value.doubleValue, number.isFinite else { throw BundleError.invalidManifest(key: key, expected: "a finite number") }
        return number
    }

    func optionalCount(_ value: JSONValue?, key: String) throws -> Int? {
        guard let value, !value.isNull else { return nil }
        guard let count = value.intValue, count >= 0 else { throw BundleError.invalidManifest(key: key, expected: "a non-negative integer") }
        return count
    }

    func optionalBool(_ value: JSONValue?, key: String) throws -> Bool? {
        guard let value, !value.isNull else { return nil }
        guard let flag = value.boolValue else { throw BundleError.invalidManifest(key: key, expected: "true or false") }
        return flag
    }

    func optionalSHA(_ value: JSONValue?, key: String) throws -> String? {
        guard let text = try optionalString(value, key: key) else { return nil }
        let hexDigits = Set("0123456789abcdef")
        guard text.count == 64, text.allSatisfy({ hexDigits.contains($0) }) else {
            throw BundleError.invalidManifest(key: key, expected: "a lower-case hex sha256 (64 characters)")
        }
        return text
    }
}

/// Where bundle files may be and what they must be: inside the bundle folder, present, of the recorded size and sha256.
public enum BundleFiles {
    /// `relative` as a location inside `root`. Absolute paths, `..` components and paths that resolve outside
    /// (through a symbolic link) are refused: nothing a manifest names may leave its folder.
    public static func resolve(_ relative: String, in root: URL) throws -> URL {
        let parts = relative.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        let drive = relative.count >= 2 && relative.dropFirst().first == ":"  // C:\ on a bundle made on Windows
        guard !relative.hasPrefix("/"), !relative.hasPrefix("\\"), !relative.hasPrefix("~"), !drive, !parts.contains(".."),
              !parts.isEmpty, !relative.contains("\u{0}") else {
            throw BundleError.pathOutsideBundle(path: relative)
        }
        let url = root.appendingPathComponent(relative)
        try contain(url, in: root, shownAs: relative)
        return url
    }

    /// Throws `pathOutsideBundle` unless `url`, with every symbolic link resolved, lies strictly inside `root`.
    static func contain(_ url: URL, in root: URL, shownAs name: String) throws {
        let base = root.resolvingSymlinksInPath().standardizedFileURL.path
        let target = url.resolvingSymlinksInPath().standardizedFileURL.path
        let prefix = base.hasSuffix("/") ? base : base + "/"
        guard target.hasPrefix(prefix), target.count > prefix.count else {
            throw BundleError.pathOutsideBundle(path: name)
        }
    }

    /// Checks that `url` exists, has `bytes` bytes (files only, as edgediff's reader does) and the given sha256.
    public static func check(_ url: URL, relative: String, bytes: Int?, sha256: String?, root: URL) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw BundleError.missingFile(path: relative)
        }
        if let bytes, !isDirectory.boolValue {
            let actual = try fileSize(url)
            guard actual == bytes else { throw BundleError.sizeMismatch(file: relative, expected: bytes, actual: actual) }
        }
        if let sha256 {
            let actual = try sha256Path(url, root: root)
            guard actual == sha256 else { throw BundleError.checksumMismatch(file: relative, expected: sha256, actual: actual) }
        }
    }

    static func fileSize(_ url: URL) throws -> Int {
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
            if let size = attributes[.size] as? NSNumber { return size.intValue }
            if let size = attributes[.size] as? Int { return size }
            if let size = attributes[.size] as? UInt64, let small = Int(exactly: size) { return small }
        } catch {
            throw BundleError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        throw BundleError.unreadableFile(path: url.path, reason: "its size is unknown")
    }

    /// sha256 of a file's bytes, as hex.
    public static func sha256File(_ url: URL) throws -> String {
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: url)
        } catch {
            throw BundleError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            let chunk: Data
            do {
                chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            } catch {
                throw BundleError.unreadableFile(path: url.path, reason: error.localizedDescription)
            }
            if chunk.isEmpty { break }
            hasher.update(chunk)
        }
        return hasher.finalizeHex()
    }

    /// sha256 of a file; for a folder (a Core ML .mlpackage), of each file's relative path followed by its hex
    /// sha256, in sorted path order: exactly edgediff/runtime/manifest.py `sha256_path`. Files inside the folder
    /// must not lead outside `root` either.
    public static func sha256Path(_ url: URL, root: URL) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw BundleError.missingFile(path: url.lastPathComponent)
        }
        guard isDirectory.boolValue else { return try sha256File(url) }
        let subpaths: [String]
        do {
            subpaths = try FileManager.default.subpathsOfDirectory(atPath: url.path)
        } catch {
            throw BundleError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        var files: [(parts: [[UInt32]], path: String, url: URL)] = []
        for subpath in subpaths {
            let fileURL = url.appendingPathComponent(subpath)
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: fileURL.path, isDirectory: &isFolder), !isFolder.boolValue else { continue }
            try contain(fileURL, in: root, shownAs: subpath)
            let parts = subpath.split(separator: "/").map { $0.unicodeScalars.map(\.value) }
            files.append((parts, subpath, fileURL))
        }
        // Python sorts pathlib paths part by part, comparing code points.
        files.sort { lhs, rhs in
            for (a, b) in zip(lhs.parts, rhs.parts) where a != b {
                return a.lexicographicallyPrecedes(b)
            }
            return lhs.parts.count < rhs.parts.count
        }
        var hasher = SHA256()
        for file in files {
            hasher.update(Array(file.path.utf8))
            hasher.update(Array(try sha256File(file.url).utf8))
        }
        return hasher.finalizeHex()
    }
}
