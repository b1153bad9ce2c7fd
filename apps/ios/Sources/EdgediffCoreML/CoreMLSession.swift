#if canImport(CoreML)
import CoreML
import EdgediffKit
import Foundation

/// Which processors Core ML may use; the names are those of targets/iphone-15-pro.toml `compute_units` and of the
/// benchmark report.
public enum ComputeUnits: String, CaseIterable, Sendable, Identifiable {
    case all
    case cpuAndNeuralEngine
    case cpuAndGPU
    case cpuOnly

    public var id: String { rawValue }

    public var mlComputeUnits: MLComputeUnits {
        switch self {
        case .all: return .all
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuOnly: return .cpuOnly
        }
    }

    /// What the picker shows.
    public var label: String {
        switch self {
        case .all: return "All (Neural Engine, GPU, CPU)"
        case .cpuAndNeuralEngine: return "CPU + Neural Engine"
        case .cpuAndGPU: return "CPU + GPU"
        case .cpuOnly: return "CPU only"
        }
    }
}

/// How one model file was opened: the compile (only the first time a package is seen) and the load, measured apart.
public struct LoadReport: Sendable, Equatable {
    public let component: String
    public let file: String
    /// Milliseconds `MLModel.compileModel(at:)` took; zero when the compiled model came from the cache.
    public let compileMs: Double
    /// Milliseconds `MLModel(contentsOf:configuration:)` took (Core ML specialises for the device on a first load).
    public let loadMs: Double
    /// True when this open compiled the package: a cold load.
    public var cold: Bool { compileMs > 0 }
}

/// One Core ML model file (one chunk of a component) behind the `InferenceSession` interface: the manifest's tensor
/// names in, float32 tensors out; inputs are converted to the type the model declares (float32, float16, int32).
public final class CoreMLSession: InferenceSession {
    public let inputs: [TensorSpec]
    public let outputs: [TensorSpec]
    public let load: LoadReport
    private let runner: ModelRunner

    init(inputs: [TensorSpec], outputs: [TensorSpec], load: LoadReport, runner: ModelRunner) {
        self.inputs = inputs
        self.outputs = outputs
        self.load = load
        self.runner = runner
    }

    /// Compiles the chunk's package if the cache does not hold it yet, then loads it for `computeUnits`.
    public static func open(component: ComponentSpec, chunk: ChunkSpec, computeUnits: ComputeUnits,
                            cache: CompiledModelCache) async throws -> CoreMLSession {
        var compiled = try await cache.compiledModel(for: chunk, component: component.name)
        let clock = ContinuousClock()
        var start = clock.now
        let runner: ModelRunner
        do {
            runner = try ModelRunner(compiledModel: compiled.url, computeUnits: computeUnits, component: component.name)
        } catch {
            // A cached compile can stop loading after an OS update: compile the package again, once.
            guard compiled.compileMs == 0, chunk.file.pathExtension != "mlmodelc" else { throw error }
            try await cache.evict(chunk)
            compiled = try await cache.compiledModel(for: chunk, component: component.name)
            start = clock.now
            runner = try ModelRunner(compiledModel: compiled.url, computeUnits: computeUnits, component: component.name)
        }
        let loadMs = milliseconds(clock.now - start)
        let report = LoadReport(component: component.name, file: chunk.relativePath, compileMs: compiled.compileMs, loadMs: loadMs)
        return CoreMLSession(inputs: chunk.inputs, outputs: chunk.outputs, load: report, runner: runner)
    }

    public func run(_ feeds: [String: Tensor]) async throws -> [String: FloatTensor] {
        let missing = inputs.map(\.name).filter { feeds[$0] == nil }
        guard missing.isEmpty else {
            throw BundleError.sessionFailed(component: load.component, detail: "inputs \(missing.joined(separator: ", ")) were not given")
        }
        var chosen: [String: Tensor] = [:]
        for spec in inputs { chosen[spec.name] = feeds[spec.name] }
        return try await runner.predict(chosen, outputs: outputs.map(\.name))
    }
}

/// Owns the MLModel. An actor, because MLModel is not Sendable: predictions run one at a time on the actor, and
/// only Sendable tensors go in and out.
actor ModelRunner {
    private let model: MLModel
    private let inputTypes: [String: MLMultiArrayDataType]
    private let component: String

    init(compiledModel url: URL, computeUnits: ComputeUnits, component: String) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits.mlComputeUnits
        let loaded: MLModel
        do {
            loaded = try MLModel(contentsOf: url, configuration: configuration)
        } catch {
            throw BundleError.sessionFailed(
                component: component,
                detail: "Core ML could not load \(url.lastPathComponent) (\(error.localizedDescription)); "
                    + "try other compute units, or re-convert for this iOS version")
        }
        var types: [String: MLMultiArrayDataType] = [:]
        for (name, description) in loaded.modelDescription.inputDescriptionsByName {
            if let constraint = description.multiArrayConstraint { types[name] = constraint.dataType }
        }
        model = loaded
        inputTypes = types
        self.component = component
    }

    func predict(_ feeds: [String: Tensor], outputs: [String]) throws -> [String: FloatTensor] {
        try autoreleasepool {
            var features: [String: MLFeatureValue] = [:]
            for (name, tensor) in feeds {
                guard let type = inputTypes[name] else {
                    throw BundleError.sessionFailed(component: component, detail: "the model has no input named \(name)")
                }
                features[name] = MLFeatureValue(multiArray: try MultiArrays.make(tensor, as: type, name: name))
            }
            let result: MLFeatureProvider
            do {
                let provider = try MLDictionaryFeatureProvider(dictionary: features)
                result = try model.prediction(from: provider)
            } catch {
                throw BundleError.sessionFailed(component: component, detail: "prediction failed: \(error.localizedDescription)")
            }
            var out: [String: FloatTensor] = [:]
            for name in outputs {
                guard let array = result.featureValue(for: name)?.multiArrayValue else {
                    throw BundleError.sessionFailed(component: component, detail: "the model returned no output '\(name)'")
                }
                out[name] = try MultiArrays.floatTensor(array, name: name)
            }
            return out
        }
    }
}

/// Tensor <-> MLMultiArray. Core ML's own conversion (concatenating one array into another data type) changes
/// float32 to float16 and back, so no Float16 arithmetic is needed here (Float16 does not exist on Intel Macs).
enum MultiArrays {
    static func make(_ tensor: Tensor, as type: MLMultiArrayDataType, name: String) throws -> MLMultiArray {
        let array: MLMultiArray
        switch tensor {
        case .float(let value):
            array = MLMultiArray(MLShapedArray<Float32>(scalars: value.data, shape: value.shape))
        case .int(let value):
            array = MLMultiArray(MLShapedArray<Int32>(scalars: value.data, shape: value.shape))
        }
        if array.dataType == type { return array }
        let convertible: [MLMultiArrayDataType] = [.float32, .float16, .double, .int32]
        guard convertible.contains(type) else {
            throw BundleError.invalidTensor(name: name, detail: "the model wants a multi-array type this app does not convert to")
        }
        return MLMultiArray(concatenating: [array], axis: 0, dataType: type)
    }

    static func floatTensor(_ array: MLMultiArray, name: String) throws -> FloatTensor {
        let float32 = array.dataType == .float32 ? array : MLMultiArray(concatenating: [array], axis: 0, dataType: .float32)
        let shaped = MLShapedArray<Float32>(float32)
        return try FloatTensor(shape: shaped.shape, data: shaped.scalars, name: name)
    }
}

func milliseconds(_ duration: Duration) -> Double {
    let parts = duration.components
    return Double(parts.seconds) * 1000 + Double(parts.attoseconds) / 1e15
}
#endif
