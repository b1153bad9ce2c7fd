import EdgediffCoreML
import EdgediffKit
import Foundation
import UIKit

/// What the benchmark screen runs; the defaults follow targets/iphone-15-pro.toml (`[benchmark]`).
struct BenchmarkSettings: Sendable {
    var warmup = 3
    /// Measured images per compute-unit setting (each image times every component; the UNet once per step).
    var runs = 5
    var neuralEngine = true
    var all = true
    var gpu = true
    var cpuOnly = false
    /// Clears the compiled-model cache first, so the report's cold load includes compiling the packages.
    var includeCompile = false

    /// The chosen compute-unit settings, in the order the target lists them.
    var units: [ComputeUnits] {
        let choices: [(chosen: Bool, units: ComputeUnits)] = [
            (neuralEngine, .cpuAndNeuralEngine), (all, .all), (gpu, .cpuAndGPU), (cpuOnly, .cpuOnly),
        ]
        return choices.filter { $0.chosen }.map { $0.units }
    }
}

extension AppModel {
    /// For each chosen compute-unit setting: load every component cold (compiling when the cache is empty), unload,
    /// load again warm, then `warmup` + `runs` images; writes the report `edgediff profile --import FILE --tool app`
    /// reads to Documents/Benchmarks (visible in Files and Finder) and offers it for sharing.
    func runBenchmark() {
        start("Benchmarking…") {
            let bundle = try self.current()
            let settings = self.benchmark
            let prompt = self.prompt
            let seed = UInt64(max(0, self.seed))
            let steps = self.steps
            var results: [ComponentBenchmark] = []
            for units in settings.units {
                self.status = "Benchmarking on \(units.label)…"
                results += try await AppModel.measure(bundle: bundle, units: units, settings: settings, prompt: prompt, seed: seed,
                                                      steps: steps) { message in
                    Task { @MainActor in self.status = "\(units.label): \(message)" }
                }
            }
            let report = try BenchmarkReport(
                device: AppModel.deviceInfo(), backend: bundle.manifest.backend, precision: bundle.manifest.precision,
                manifestSha256: bundle.manifest.manifestSha256, results: results, appName: "EdgeDiff",
                appVersion: Bundle.main.object(forInfoDictionaryKey: "CFBundleShortVersionString") as? String ?? "0.1.0")
            let stamp = Int(Date().timeIntervalSince1970)
            let url = BundleLibrary.reportsFolder.appendingPathComponent("\(bundle.entry.name)-\(stamp).json")
            try report.write(to: url)
            self.lastReportURL = url
            self.status = "Report written: Benchmarks/\(url.lastPathComponent). Read it with `edgediff profile --import FILE --tool app`."
        }
    }

    /// One compute-unit setting: cold and warm loads, then the timed images.
    private static func measure(bundle: LoadedBundle, units: ComputeUnits, settings: BenchmarkSettings, prompt: String, seed: UInt64,
                                steps: Int, progress: @escaping @Sendable (String) -> Void) async throws -> [ComponentBenchmark] {
        let cache = try CompiledModelCache.applicationSupport()
        if settings.includeCompile { await cache.clear() }
        let log = LoadLog()
        let factory = CoreMLSessionFactory(computeUnits: units, cache: cache, log: log)
        let sessions = ResidentSessions(factory: factory)
        let sequential = bundle.plan.strategy == .oneAtATime
        for round in ["cold", "warm"] {
            progress("\(round) load")
            for name in BundleManifest.requiredComponents {
                _ = try await sessions.session(for: try bundle.manifest.component(name))
                if sequential || round == "cold" { await sessions.release(name) }
            }
        }
        let loads = await log.summary()
        var extra: [String: [String: JSONValue]] = [:]
        var warmLoads: [String: Double] = [:]
        for (component, load) in loads {
            var entry: [String: JSONValue] = ["cold_load_ms": .number((load.coldMs * 1000).rounded() / 1000)]
            if let warm = load.warmMs {
                entry["warm_load_ms"] = .number((warm * 1000).rounded() / 1000)
                warmLoads[component] = warm
            }
            entry["memory_strategy"] = .string(bundle.plan.strategy.rawValue)
            extra[component] = entry
        }
        warmLoads["pipeline"] = warmLoads.values.reduce(0, +)
        let pipeline = try TextToImage(manifest: bundle.manifest, sessions: sessions, memoryPlan: bundle.plan,
                                       tokenizer: bundle.pipeline.tokenizer)
        let runner = BenchmarkRunner(pipeline: pipeline, computeUnits: units.rawValue,
                                     peakMemoryMb: { DeviceMemory.footprint()?.peakMB },
                                     thermalState: { DeviceMemory.thermalState() })
        let results = try await runner.run(prompt: prompt, seed: seed, warmup: settings.warmup, runs: max(1, settings.runs), steps: steps,
                                           loadMs: warmLoads, extraSettings: extra, onProgress: progress)
        for name in BundleManifest.requiredComponents { await sessions.release(name) }
        return results
    }

    /// What `edgediff profile --import` records about the device (`device.model` is required).
    static func deviceInfo() -> [String: JSONValue] {
        let device = UIDevice.current
        return [
            "model": .string(DeviceMemory.modelIdentifier()),
            "name": .string(device.model),
            "system": .string("\(device.systemName) \(device.systemVersion)"),
            "physical_memory_mb": .number(DeviceMemory.physicalMB.rounded()),
        ]
    }
}
