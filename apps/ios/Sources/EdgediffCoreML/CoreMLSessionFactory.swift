#if canImport(CoreML)
import CoreML
import EdgediffKit
import Foundation

/// Opens Core ML sessions for a bundle's chunks and remembers how each load went, so the benchmark can report the
/// cold load (compile + first load) apart from the warm one (loading the cached compile again).
public actor LoadLog {
    public private(set) var reports: [LoadReport] = []

    public init() {}

    func record(_ report: LoadReport) {
        reports.append(report)
    }

    /// Compile plus load per component, summed over its chunks, for the first (cold) and the latest open.
    public func summary() -> [String: (coldMs: Double, warmMs: Double?)] {
        var byComponent: [String: [[LoadReport]]] = [:]
        var opened: [String: Set<String>] = [:]
        for report in reports {
            var rounds = byComponent[report.component] ?? []
            var seen = opened[report.component] ?? []
            if rounds.isEmpty || seen.contains(report.file) {
                rounds.append([])
                seen = []
            }
            rounds[rounds.count - 1].append(report)
            seen.insert(report.file)
            byComponent[report.component] = rounds
            opened[report.component] = seen
        }
        var out: [String: (coldMs: Double, warmMs: Double?)] = [:]
        for (component, rounds) in byComponent {
            let totals = rounds.map { $0.reduce(0) { $0 + $1.compileMs + $1.loadMs } }
            guard let first = totals.first else { continue }
            out[component] = (first, totals.count > 1 ? totals.last : nil)
        }
        return out
    }

    public func clear() {
        reports = []
    }
}

/// The `SessionFactory` of the iOS app: one `CoreMLSession` per chunk, on the chosen compute units.
public struct CoreMLSessionFactory: SessionFactory {
    public let computeUnits: ComputeUnits
    public let cache: CompiledModelCache
    public let log: LoadLog

    public init(computeUnits: ComputeUnits, cache: CompiledModelCache, log: LoadLog = LoadLog()) {
        self.computeUnits = computeUnits
        self.cache = cache
        self.log = log
    }

    public func open(_ component: ComponentSpec, _ chunk: ChunkSpec) async throws -> any InferenceSession {
        let session = try await CoreMLSession.open(component: component, chunk: chunk, computeUnits: computeUnits, cache: cache)
        await log.record(session.load)
        return session
    }
}
#endif
