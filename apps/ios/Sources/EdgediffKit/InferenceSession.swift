import Foundation

/// The one thing the pipeline needs from a runtime: named tensors in, named float32 tensors out.
///
/// A session casts inputs to what its model file declares (int32 ids, float16 activations) and returns float32.
/// EdgediffCoreML implements it over Core ML; tests implement it over recorded tensors. Sessions are shared
/// across tasks, so they are Sendable (an actor, or immutable).
public protocol InferenceSession: Sendable {
    var inputs: [TensorSpec] { get }
    var outputs: [TensorSpec] { get }
    func run(_ feeds: [String: Tensor]) async throws -> [String: FloatTensor]
}

/// Opens the session of one model file (one chunk of a component).
public protocol SessionFactory: Sendable {
    func open(_ component: ComponentSpec, _ chunk: ChunkSpec) async throws -> any InferenceSession
}

/// A component split into several model files: chunk i sees the component's inputs plus every output of the
/// chunks before it, matched by name (as edgediff/runtime/sessions.py `ChainedSession`).
public struct ChainedSession: InferenceSession {
    public let component: ComponentSpec
    public let parts: [any InferenceSession]

    public init(component: ComponentSpec, parts: [any InferenceSession]) {
        self.component = component
        self.parts = parts
    }

    public var inputs: [TensorSpec] { component.inputs }
    public var outputs: [TensorSpec] { component.outputs }

    public func run(_ feeds: [String: Tensor]) async throws -> [String: FloatTensor] {
        var pool = feeds
        for part in parts {
            let missing = part.inputs.map(\.name).filter { pool[$0] == nil }
            guard missing.isEmpty else {
                throw BundleError.sessionFailed(
                    component: component.name,
                    detail: "a chunk needs inputs \(missing.joined(separator: ", ")) that nothing provides; check the manifest's chunk names")
            }
            var chosen: [String: Tensor] = [:]
            for spec in part.inputs { chosen[spec.name] = pool[spec.name] }
            for (name, value) in try await part.run(chosen) { pool[name] = .float(value) }
        }
        var result: [String: FloatTensor] = [:]
        for spec in outputs {
            guard case .float(let value)? = pool[spec.name] else {
                throw BundleError.sessionFailed(component: component.name, detail: "no chunk produced output \(spec.name)")
            }
            result[spec.name] = value
        }
        return result
    }

    /// One session per chunk, chained when there is more than one (or when the chunk's inputs differ).
    public static func open(_ component: ComponentSpec, factory: any SessionFactory) async throws -> any InferenceSession {
        var parts: [any InferenceSession] = []
        for chunk in component.chunks {
            do {
                parts.append(try await factory.open(component, chunk))
            } catch let error as BundleError {
                throw error
            } catch {
                throw BundleError.sessionFailed(component: component.name, detail: error.localizedDescription)
            }
        }
        if parts.count == 1, let only = parts.first, only.inputs == component.inputs { return only }
        return ChainedSession(component: component, parts: parts)
    }
}

/// Where the pipeline gets a component's session: `session(for:)` may load it (seconds, the first time);
/// `release(_:)` lets it go when the memory plan says components must not stay resident together.
public protocol SessionProvider: Sendable {
    func session(for component: ComponentSpec) async throws -> any InferenceSession
    func release(_ component: String) async
}

/// Sessions opened through a factory and kept until released; records each component's load time.
public actor ResidentSessions: SessionProvider {
    private let factory: any SessionFactory
    private var resident: [String: any InferenceSession] = [:]
    /// Milliseconds each component's last load took (the benchmark's load_ms).
    public private(set) var componentLoadMs: [String: Double] = [:]

    public init(factory: any SessionFactory) {
        self.factory = factory
    }

    public func session(for component: ComponentSpec) async throws -> any InferenceSession {
        if let session = resident[component.name] { return session }
        let clock = Stopwatch()
        let session = try await ChainedSession.open(component, factory: factory)
        componentLoadMs[component.name] = clock.elapsed()
        resident[component.name] = session
        return session
    }

    public func release(_ component: String) {
        resident[component] = nil
    }

    public var loaded: [String] { resident.keys.sorted() }
}

/// How the three pipeline components are kept in memory.
public enum LoadStrategy: String, Sendable, Equatable {
    /// Load each component once and keep it: fastest.
    case allResident
    /// Load a component, run it, unload it, then the next: fits a smaller budget, reloads every image.
    case oneAtATime
}

/// The memory plan for a bundle on a device, the same rule in both cores (Kotlin: InferenceSession.kt `MemoryPlan`):
///
/// - a component needs what the bundle's `memory.components` records for it, else its model files' bytes; the whole
///   pipeline needs `memory.peak_mb`, else the sum;
/// - the bundle's recorded `memory.plan` decides when it applies, i.e. when the device's budget is unknown or at least
///   the `budget_mb` it was planned for: "all resident", "sequential" (one at a time), "does not fit" (refused);
/// - otherwise, against the smaller of the device's budget (what the system grants the app) and the bundle's: all
///   resident when the peak fits, one at a time when only each component alone fits, and `overMemoryBudget` when one
///   component alone exceeds it (the rule of edgediff/bundle.py `memory_entry`).
public struct MemoryPlan: Sendable, Equatable {
    public let strategy: LoadStrategy
    public let budgetMB: Double?
    public let peakMB: Double
    /// A sentence for the user: what was decided and why.
    public let explanation: String

    /// Throws `overMemoryBudget` when even the largest component alone exceeds the budget (or the bundle says so).
    public static func plan(manifest: BundleManifest, deviceBudgetMB: Double?) throws -> MemoryPlan {
        let memory = manifest.memory
        var needs: [String: Double] = [:]
        for name in BundleManifest.requiredComponents {
            guard let component = manifest.components[name] else { continue }
            needs[name] = memory?.componentPeakMB[name] ?? Double(component.bytes) / 1_048_576
        }
        let peak = memory?.peakMB ?? needs.values.reduce(0, +)
        let largest = needs.values.max()
        if let recorded = memory?.plan, let recordedBudget = memory?.budgetMB, deviceBudgetMB.map({ $0 >= recordedBudget }) ?? true {
            let target = memory?.target ?? "its target"
            switch recorded {
            case MemorySpec.allResident:
                return MemoryPlan(strategy: .allResident, budgetMB: recordedBudget, peakMB: peak,
                                  explanation: "The bundle was planned for \(target): about \(wholeMB(peak)) MB of its "
                                      + "\(wholeMB(recordedBudget)) MB budget; all models stay loaded.")
            case MemorySpec.sequential:
                return MemoryPlan(strategy: .oneAtATime, budgetMB: recordedBudget, peakMB: peak,
                                  explanation: sequentialText(peak: peak, budget: recordedBudget))
            default:
                throw BundleError.overMemoryBudget(neededMB: wholeMB((largest ?? peak).rounded(.up)),
                                                   budgetMB: wholeMB(recordedBudget.rounded(.down)))
            }
        }
        let budgets = [deviceBudgetMB, memory?.budgetMB].compactMap { $0 }.filter { $0 >= 0 }
        guard let budget = budgets.min() else {
            return MemoryPlan(strategy: .allResident, budgetMB: nil, peakMB: peak,
                              explanation: "No memory budget is known for this device; all models stay loaded.")
        }
        if peak <= budget {
            return MemoryPlan(strategy: .allResident, budgetMB: budget, peakMB: peak,
                              explanation: "The bundle needs about \(wholeMB(peak)) MB of the \(wholeMB(budget)) MB budget; all models stay loaded.")
        }
        if let largest, largest > budget {
            throw BundleError.overMemoryBudget(neededMB: wholeMB(largest.rounded(.up)), budgetMB: wholeMB(budget.rounded(.down)))
        }
        return MemoryPlan(strategy: .oneAtATime, budgetMB: budget, peakMB: peak, explanation: sequentialText(peak: peak, budget: budget))
    }

    static func sequentialText(peak: Double, budget: Double) -> String {
        "The bundle needs about \(wholeMB(peak)) MB with every model loaded but this device allows \(wholeMB(budget)) MB, "
            + "so the text encoder, UNet and VAE decoder are loaded one at a time (slower: each image loads them again)."
    }

    /// Megabytes as a whole number for messages, safe for any Double a manifest can hold.
    static func wholeMB(_ value: Double) -> Int {
        guard value.isFinite else { return 0 }
        return Int(min(max(value.rounded(), 0), 1e12))
    }
}
