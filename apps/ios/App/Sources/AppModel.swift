import CoreGraphics
import EdgediffCoreML
import EdgediffKit
import Foundation
import Observation

/// An opened bundle: its checked manifest, the pipeline over Core ML sessions, and the plan that says how models
/// share memory.
struct LoadedBundle: Sendable {
    let entry: BundleEntry
    let manifest: BundleManifest
    let pipeline: TextToImage
    let sessions: ResidentSessions
    let factory: CoreMLSessionFactory
    let plan: MemoryPlan
    let computeUnits: ComputeUnits
}

/// The app's state and actions. Every failure lands in `errorMessage` as the bundle error's own words; nothing
/// a bundle holds can crash the app.
@MainActor
@Observable
final class AppModel {
    var bundles: [BundleEntry] = []
    var selectedID: BundleEntry.ID?
    var prompt = "a red circle on a blue background"
    var negativePrompt = ""
    var steps = 25
    var seed = 0
    var guidance = 7.5
    var computeUnits: ComputeUnits = .cpuAndNeuralEngine
    var status = "Pick a bundle."
    var progress: Double?
    var errorMessage: String?
    var isBusy = false
    var image: CGImage?
    var timings: StageTimings?
    var loaded: LoadedBundle?
    var showImporter = false
    var benchmark = BenchmarkSettings()
    var lastReportURL: URL?
    var goldenSummary: String?
    @ObservationIgnored private var work: Task<Void, Never>?

    var selected: BundleEntry? { bundles.first { $0.id == selectedID } }
    var availableSteps: [Int] { loaded.map { [$0.pipeline.defaultSteps] } ?? [] }
    var memoryExplanation: String? { loaded?.plan.explanation }

    init() {
        refreshBundles()
    }

    func refreshBundles() {
        bundles = BundleLibrary.discover()
        if selectedID == nil || selected == nil { selectedID = bundles.first?.id }
        if bundles.isEmpty {
            status = "No bundle yet: add one from Files, through Finder file sharing, or in App/bundles (see the README)."
        }
    }

    /// Starts `body` as the one running job (the buttons are disabled while one runs; Cancel stops it).
    func start(_ message: String, _ body: @escaping @MainActor @Sendable () async throws -> Void) {
        guard !isBusy else { return }
        isBusy = true
        errorMessage = nil
        status = message
        work = Task { @MainActor in
            defer {
                self.isBusy = false
                self.progress = nil
            }
            do {
                try await body()
            } catch let error as BundleError {
                self.errorMessage = error.description
                self.status = "Stopped: \(error.code.replacingOccurrences(of: "_", with: " "))."
            } catch is CancellationError {
                self.status = "Cancelled."
            } catch {
                self.errorMessage = error.localizedDescription
                self.status = "Stopped."
            }
        }
    }

    func cancel() {
        work?.cancel()
    }

    // MARK: - bundles

    func importBundle(from url: URL) {
        start("Copying \(url.lastPathComponent) into the app…") {
            let entry = try await BundleLibrary.importBundle(from: url)
            self.refreshBundles()
            self.selectedID = entry.id
            try await self.open(entry)
        }
    }

    func openSelected() {
        guard let entry = selected else { return }
        start("Checking \(entry.name) (every file's sha256)…") { try await self.open(entry) }
    }

    /// Checks the bundle (format, paths, sizes, checksums), plans memory, and prepares the pipeline. Models load on
    /// the first image (compiling a package the first time it is seen).
    private func open(_ entry: BundleEntry) async throws {
        loaded = nil
        image = nil
        timings = nil
        goldenSummary = nil
        let url = entry.url
        let manifest = try await Task.detached(priority: .userInitiated) { try BundleManifest.load(url) }.value
        guard manifest.backend == "coreml" else {
            throw BundleError.unsupportedBackend(backend: manifest.backend, available: ["coreml"])
        }
        loaded = try makePipeline(entry: entry, manifest: manifest, units: computeUnits)
        if let pipeline = loaded?.pipeline {
            steps = pipeline.defaultSteps
            guidance = pipeline.defaultGuidance
            _ = try pipeline.scheduler(steps: steps)
        }
        status = "\(entry.name): \(manifest.precision) Core ML bundle ready."
    }

    private func makePipeline(entry: BundleEntry, manifest: BundleManifest, units: ComputeUnits) throws -> LoadedBundle {
        let plan = try DeviceMemory.plan(for: manifest)
        let factory = CoreMLSessionFactory(computeUnits: units, cache: try CompiledModelCache.applicationSupport())
        let sessions = ResidentSessions(factory: factory)
        let pipeline = try TextToImage(manifest: manifest, sessions: sessions, memoryPlan: plan)
        return LoadedBundle(entry: entry, manifest: manifest, pipeline: pipeline, sessions: sessions, factory: factory,
                            plan: plan, computeUnits: units)
    }

    /// The loaded bundle on the chosen compute units (new sessions when the choice changed).
    func current() throws -> LoadedBundle {
        guard let loaded else {
            throw BundleError.missingFile(path: "a bundle: pick one and tap Open")
        }
        if loaded.computeUnits == computeUnits { return loaded }
        let fresh = try makePipeline(entry: loaded.entry, manifest: loaded.manifest, units: computeUnits)
        self.loaded = fresh
        return fresh
    }

    // MARK: - images

    func generate() {
        start("Generating…") {
            let bundle = try self.current()
            let result = try await bundle.pipeline.generate(
                prompt: self.prompt, seed: UInt64(max(0, self.seed)), steps: self.steps, guidance: self.guidance,
                negativePrompt: self.negativePrompt,
                onStep: { step, total, _ in
                    Task { @MainActor in self.progress = Double(step + 1) / Double(total) }
                })
            self.image = ImageConversion.cgImage(result.image)
            self.timings = result.timings
            self.status = String(format: "Done in %.1f s (%@).", result.timings.totalMs / 1000, bundle.plan.strategy == .oneAtATime
                ? "models loaded one at a time" : "models resident")
        }
    }

    /// Runs the golden prompt and seed with every intermediate kept and names the first stage that drifts.
    func checkAgainstGolden() {
        start("Checking against the golden files…") {
            let bundle = try self.current()
            guard let folder = bundle.entry.goldenFolder else {
                throw BundleError.missingFile(path: "golden/golden.json (write it with `edgediff bundle-golden BUNDLE`)")
            }
            let golden = try await Task.detached { try GoldenFiles(dir: folder) }.value
            let result = try await bundle.pipeline.generate(
                prompt: golden.prompt, seed: golden.seed, steps: golden.steps, guidance: golden.guidance,
                negativePrompt: golden.negativePrompt, keepIntermediates: true)
            let tables = try bundle.pipeline.scheduler(steps: golden.steps).tables
            let report = try GoldenCheck.compare(golden: golden, result: result, tables: tables,
                                                 tokenizer: bundle.pipeline.tokenizer, tol: .device)
            self.image = ImageConversion.cgImage(result.image)
            self.timings = result.timings
            self.goldenSummary = report.describe()
            self.status = report.passed ? "Matches the golden files." : "Drifts from the golden files at \(report.firstDrift?.stage ?? "?")."
        }
    }
}
