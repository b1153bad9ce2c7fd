import Foundation

/// Latencies of one component over the measured runs, plus what the device says around them.
public struct ComponentBenchmark: Sendable, Equatable {
    public var component: String
    public var latenciesMs: [Double]
    public var computeUnits: String?
    public var loadMs: Double?
    public var firstInferenceMs: Double?
    public var warmup: Int?
    public var peakMemoryMb: Double?
    public var thermalStart: String?
    public var thermalEnd: String?
    public var settings: [String: JSONValue]

    public init(component: String, latenciesMs: [Double], computeUnits: String? = nil, loadMs: Double? = nil,
                firstInferenceMs: Double? = nil, warmup: Int? = nil, peakMemoryMb: Double? = nil, thermalStart: String? = nil,
                thermalEnd: String? = nil, settings: [String: JSONValue] = [:]) {
        self.component = component
        self.latenciesMs = latenciesMs
        self.computeUnits = computeUnits
        self.loadMs = loadMs
        self.firstInferenceMs = firstInferenceMs
        self.warmup = warmup
        self.peakMemoryMb = peakMemoryMb
        self.thermalStart = thermalStart
        self.thermalEnd = thermalEnd
        self.settings = settings
    }

    public var median: Double { BenchmarkReport.median(latenciesMs) }
    public var p90: Double { BenchmarkReport.p90(latenciesMs) }
}

/// The app's benchmark result in the format `edgediff profile --import FILE --tool app` reads
/// (edgediff/profile/parsers/app_report.py, `edgediff-app-benchmark/1`). Summary statistics are written beside the
/// raw latencies, computed the way the importer checks them (median; p90 by linear interpolation).
public struct BenchmarkReport: Sendable {
    public static let format = "edgediff-app-benchmark/1"

    public let device: [String: JSONValue]
    public let backend: String
    public let precision: String
    public let manifestSha256: String?
    public let results: [ComponentBenchmark]
    public let appName: String
    public let appVersion: String
    public let created: Date

    /// Throws `invalidManifest` when the importer would refuse the report (no device.model, no results).
    public init(device: [String: JSONValue], backend: String, precision: String, manifestSha256: String?,
                results: [ComponentBenchmark], appName: String = "edgediff-ios", appVersion: String = "0.1.0",
                created: Date = Date()) throws {
        guard let model = device["model"]?.stringValue, !model.isEmpty else {
            throw BundleError.invalidManifest(key: "report device.model", expected: "the device's model identifier (the importer needs it)")
        }
        guard !results.isEmpty, results.allSatisfy({ !$0.latenciesMs.isEmpty }) else {
            throw BundleError.invalidManifest(key: "report results", expected: "at least one component with measured latencies")
        }
        self.device = device
        self.backend = backend
        self.precision = precision
        self.manifestSha256 = manifestSha256
        self.results = results
        self.appName = appName
        self.appVersion = appVersion
        self.created = created
    }

    public func toJson() -> JSONValue {
        var bundle: [String: JSONValue] = ["backend": .string(backend), "precision": .string(precision)]
        if let manifestSha256 { bundle["manifest_sha256"] = .string(manifestSha256) }
        let list: [JSONValue] = results.map { r -> JSONValue in
            var o: [String: JSONValue] = ["component": .string(r.component)]
            if let units = r.computeUnits { o["compute_units"] = .string(units) }
            if let load = r.loadMs { o["load_ms"] = .number(BenchmarkReport.round3(load)) }
            if let first = r.firstInferenceMs { o["first_inference_ms"] = .number(BenchmarkReport.round3(first)) }
            if let warmup = r.warmup { o["warmup"] = .number(Double(warmup)) }
            let latencies = r.latenciesMs.map(BenchmarkReport.round3)
            o["latencies_ms"] = .array(latencies.map { JSONValue.number($0) })
            if !latencies.isEmpty {
                o["median_ms"] = .number(BenchmarkReport.median(latencies))
                o["p90_ms"] = .number(BenchmarkReport.p90(latencies))
                o["runs"] = .number(Double(latencies.count))
            }
            if let peak = r.peakMemoryMb { o["peak_memory_mb"] = .number(BenchmarkReport.round3(peak)) }
            if r.thermalStart != nil || r.thermalEnd != nil {
                var thermal: [String: JSONValue] = [:]
                if let start = r.thermalStart { thermal["start"] = .string(start) }
                if let end = r.thermalEnd { thermal["end"] = .string(end) }
                o["thermal_state"] = .object(thermal)
            }
            if !r.settings.isEmpty { o["settings"] = .object(r.settings) }
            return JSONValue.object(o)
        }
        return .object([
            "format": .string(BenchmarkReport.format),
            "app": .object(["name": .string(appName), "version": .string(appVersion)]),
            "device": .object(device),
            "bundle": .object(bundle),
            "created": .string(BenchmarkReport.iso8601(created)),
            "results": .array(list),
        ])
    }

    /// Writes the report atomically (a partial file never looks finished).
    public func write(to url: URL) throws {
        let text = toJson().serialized(indent: 1) + "\n"
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url, options: .atomic)
        } catch {
            throw BundleError.unreadableFile(path: url.path, reason: "cannot write the report: \(error.localizedDescription)")
        }
    }

    static func round3(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }

    public static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return 0 }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    public static func p90(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return 0 }
        let position = 0.9 * Double(s.count - 1)
        let low = Int(position)
        let high = min(low + 1, s.count - 1)
        return s[low] + (s[high] - s[low]) * (position - Double(low))
    }

    /// `2026-05-01T10:00:00Z` (UTC, whole seconds), written by hand so it needs no formatter class.
    static func iso8601(_ date: Date) -> String {
        let seconds = Int(date.timeIntervalSince1970.rounded(.down))
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        // civil-from-days (Howard Hinnant's algorithm)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(year)-\(two(month))-\(two(day))T\(two(secondOfDay / 3600)):\(two(secondOfDay % 3600 / 60)):\(two(secondOfDay % 60))Z"
    }
}

/// The benchmark the app runs: `warmup` images, then `runs` images, each timed per stage; a component's latencies
/// are its per-run times (the UNet's are per call). Memory and thermal state come from the platform through the
/// probes; load times from the session provider (cold: compiled and loaded for the first time; warm: loaded again).
public struct BenchmarkRunner: Sendable {
    public let pipeline: TextToImage
    public let computeUnits: String
    public let peakMemoryMb: @Sendable () -> Double?
    public let thermalState: @Sendable () -> String?

    public init(pipeline: TextToImage, computeUnits: String, peakMemoryMb: @escaping @Sendable () -> Double? = { nil },
                thermalState: @escaping @Sendable () -> String? = { nil }) {
        self.pipeline = pipeline
        self.computeUnits = computeUnits
        self.peakMemoryMb = peakMemoryMb
        self.thermalState = thermalState
    }

    /// `loadMs` per component (e.g. from `ResidentSessions.componentLoadMs` after a warm load) and extra settings
    /// per component (e.g. the cold, compiling load) go into the results as they are.
    public func run(prompt: String, seed: UInt64, warmup: Int, runs: Int, steps: Int? = nil, loadMs: [String: Double] = [:],
                    extraSettings: [String: [String: JSONValue]] = [:],
                    onProgress: @Sendable (String) -> Void = { _ in }) async throws -> [ComponentBenchmark] {
        guard runs >= 1, warmup >= 0 else {
            throw BundleError.invalidManifest(key: "benchmark", expected: "runs >= 1 and warmup >= 0")
        }
        let thermalStart = thermalState()
        var first: GenerationResult? = nil
        for i in 0..<warmup {
            onProgress("warm-up \(i + 1)/\(warmup)")
            let result = try await pipeline.generate(prompt: prompt, seed: seed, steps: steps)
            if first == nil { first = result }
        }
        var measured: [GenerationResult] = []
        for i in 0..<runs {
            onProgress("run \(i + 1)/\(runs)")
            let result = try await pipeline.generate(prompt: prompt, seed: seed, steps: steps)
            if first == nil { first = result }
            measured.append(result)
        }
        let thermalEnd = thermalState()
        let peak = peakMemoryMb()
        guard let firstTimings = first?.timings, let sample = measured.first else { return [] }
        let settings: [String: JSONValue] = [
            "prompt": .string(prompt), "seed": .number(Double(seed)), "steps": .number(Double(sample.steps)),
            "guidance": .number(sample.guidance), "memory_strategy": .string(pipeline.memoryPlan.strategy.rawValue),
        ]
        func result(_ component: String, _ firstMs: Double?, _ latencies: [Double]) -> ComponentBenchmark {
            ComponentBenchmark(component: component, latenciesMs: latencies, computeUnits: computeUnits, loadMs: loadMs[component],
                               firstInferenceMs: firstMs, warmup: warmup, peakMemoryMb: peak, thermalStart: thermalStart,
                               thermalEnd: thermalEnd, settings: settings.merging(extraSettings[component] ?? [:]) { _, new in new })
        }
        return [
            result("text_encoder", firstTimings.textEncoderMs, measured.map(\.timings.textEncoderMs)),
            result("unet", firstTimings.unetStepMs.first, measured.flatMap(\.timings.unetStepMs)),
            result("vae_decoder", firstTimings.vaeDecoderMs, measured.map(\.timings.vaeDecoderMs)),
            result("pipeline", firstTimings.totalMs, measured.map(\.timings.totalMs)),
        ]
    }
}
