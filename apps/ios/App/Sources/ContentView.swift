import EdgediffCoreML
import EdgediffKit
import SwiftUI
import UniformTypeIdentifiers

/// One screen: bundle, prompt and settings, the image with its per-stage timings, the benchmark, the golden check.
struct ContentView: View {
    @Bindable var model: AppModel

    var body: some View {
        NavigationStack {
            Form {
                bundleSection
                promptSection
                generateSection
                if let image = model.image { imageSection(image) }
                if let timings = model.timings { timingsSection(timings) }
                benchmarkSection
                if model.loaded?.entry.goldenFolder != nil || model.goldenSummary != nil { goldenSection }
                if let message = model.errorMessage {
                    Section("Problem") {
                        Text(message).foregroundStyle(.red).textSelection(.enabled)
                    }
                }
            }
            .navigationTitle("EdgeDiff")
            .fileImporter(isPresented: $model.showImporter, allowedContentTypes: [.folder]) { result in
                switch result {
                case .success(let url): model.importBundle(from: url)
                case .failure(let error): model.errorMessage = error.localizedDescription
                }
            }
            .refreshable { await model.refreshBundles() }
        }
    }

    private var bundleSection: some View {
        Section {
            if model.bundles.isEmpty {
                Text("No bundle found.").foregroundStyle(.secondary)
            } else {
                Picker("Bundle", selection: $model.selectedID) {
                    ForEach(model.bundles) { entry in
                        Text("\(entry.name) (\(entry.source.rawValue))").tag(Optional(entry.id))
                    }
                }
            }
            HStack {
                Button("Open") { model.openSelected() }
                    .disabled(model.selected == nil || model.isBusy)
                Spacer()
                Button("Add from Files…") { model.showImporter = true }
                    .disabled(model.isBusy)
            }
            if let plan = model.memoryExplanation {
                Text(plan).font(.footnote).foregroundStyle(.secondary)
            }
        } header: {
            Text("Bundle")
        } footer: {
            Text("Bundles made by `edgediff bundle --app ios`. Copy them with Finder file sharing or the Files app, or ship them in App/bundles.")
        }
    }

    private var promptSection: some View {
        Section("Prompt") {
            TextField("Prompt", text: $model.prompt, axis: .vertical)
            TextField("Negative prompt", text: $model.negativePrompt, axis: .vertical)
            if model.availableSteps.count > 1 {
                Picker("Steps", selection: $model.steps) {
                    ForEach(model.availableSteps, id: \.self) { Text("\($0)").tag($0) }
                }
            } else {
                LabeledContent("Steps", value: "\(model.steps)")
            }
            LabeledContent("Seed") {
                TextField("Seed", value: $model.seed, format: .number)
                    .keyboardType(.numberPad)
                    .multilineTextAlignment(.trailing)
            }
            VStack(alignment: .leading) {
                Text("Guidance \(model.guidance, specifier: "%.1f")")
                Slider(value: $model.guidance, in: 1...15, step: 0.5)
            }
            Picker("Compute units", selection: $model.computeUnits) {
                ForEach(ComputeUnits.allCases) { Text($0.label).tag($0) }
            }
        }
    }

    private var generateSection: some View {
        Section {
            HStack {
                Button("Generate") { model.generate() }
                    .disabled(model.loaded == nil || model.isBusy)
                Spacer()
                if model.isBusy {
                    Button("Cancel", role: .cancel) { model.cancel() }
                }
            }
            if let progress = model.progress {
                ProgressView(value: progress)
            } else if model.isBusy {
                ProgressView()
            }
            Text(model.status).font(.footnote)
        }
    }

    private func imageSection(_ image: CGImage) -> some View {
        Section("Image") {
            Image(decorative: image, scale: 1)
                .resizable()
                .interpolation(.high)
                .aspectRatio(contentMode: .fit)
                .frame(maxWidth: .infinity)
            if let png = ImageConversion.pngData(image) {
                ShareLink(item: PNGImage(data: png), preview: SharePreview("EdgeDiff image", image: Image(decorative: image, scale: 1)))
            }
        }
    }

    private func timingsSection(_ timings: StageTimings) -> some View {
        Section("Per-stage timings") {
            row("Model loading", timings.loadMs)
            row("Tokenizer", timings.tokenizeMs)
            row("Text encoder", timings.textEncoderMs)
            row("UNet (\(timings.unetStepMs.count) steps)", timings.unetMs)
            if let first = timings.unetStepMs.first, let median = timings.summary()["unet_step_median_ms"] {
                row("  first step", first)
                row("  median step", median)
            }
            row("Scheduler", timings.schedulerMs)
            row("VAE decoder", timings.vaeDecoderMs)
            row("Total", timings.totalMs)
        }
    }

    private func row(_ label: String, _ milliseconds: Double) -> some View {
        LabeledContent(label, value: milliseconds >= 1000 ? String(format: "%.2f s", milliseconds / 1000) : String(format: "%.1f ms", milliseconds))
    }

    private var benchmarkSection: some View {
        Section {
            Stepper("Warm-up images: \(model.benchmark.warmup)", value: $model.benchmark.warmup, in: 0...10)
            Stepper("Measured images: \(model.benchmark.runs)", value: $model.benchmark.runs, in: 1...50)
            Toggle(ComputeUnits.cpuAndNeuralEngine.label, isOn: $model.benchmark.neuralEngine)
            Toggle(ComputeUnits.all.label, isOn: $model.benchmark.all)
            Toggle(ComputeUnits.cpuAndGPU.label, isOn: $model.benchmark.gpu)
            Toggle(ComputeUnits.cpuOnly.label, isOn: $model.benchmark.cpuOnly)
            Toggle("Include compiling (clears the compiled-model cache)", isOn: $model.benchmark.includeCompile)
            Button("Run benchmark") { model.runBenchmark() }
                .disabled(model.loaded == nil || model.isBusy || model.benchmark.units.isEmpty)
            if let url = model.lastReportURL {
                ShareLink(item: url) { Label(url.lastPathComponent, systemImage: "square.and.arrow.up") }
            }
        } header: {
            Text("Benchmark")
        } footer: {
            Text("Writes Benchmarks/<bundle>-<time>.json in the app's files; on a computer: edgediff profile --import FILE --tool app")
        }
    }

    private var goldenSection: some View {
        Section("Golden self-check") {
            Button("Check against the bundle's golden files") { model.checkAgainstGolden() }
                .disabled(model.loaded == nil || model.isBusy)
            if let summary = model.goldenSummary {
                Text(summary).font(.caption.monospaced()).textSelection(.enabled)
            }
        }
    }
}

/// A PNG for the share sheet.
struct PNGImage: Transferable, Sendable {
    let data: Data

    static var transferRepresentation: some TransferRepresentation {
        DataRepresentation(exportedContentType: .png) { image in image.data }
    }
}
