import XCTest
@testable import EdgediffKit

/// Bad bundles are refused by a named check (the BundleError's code), never by a crash: the same cases as the
/// Kotlin core's ManifestTest, plus the memory plan and the .mlpackage checksum.
final class ManifestTests: XCTestCase {
    func testAValidBundleLoadsWithEveryChecksumVerified() throws {
        let bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        let manifest = try bundle.load()
        XCTAssertEqual(manifest.format, "edgediff-bundle/1")
        XCTAssertEqual(manifest.components.keys.sorted(), ["text_encoder", "unet", "vae_decoder"])
        XCTAssertEqual(manifest.pipeline.scheduler.tables?.steps.count, 25)
        XCTAssertEqual(try manifest.component("unet").input("sample")?.fixedDim(0), 2)
        XCTAssertEqual(manifest.manifestSha256.count, 64)
        _ = try ClipTokenizer.fromManifest(manifest)  // the tokenizer the manifest points at loads
    }

    func testMissingComponent() throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        try bundle.set(["components", "unet"], nil)
        let error = assertRefused("missing_component") { _ = try bundle.load() }
        guard case .missingComponent(let component, let have)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(component, "unet")
        XCTAssertEqual(have.sorted(), ["text_encoder", "vae_decoder"])
    }

    func testWrongFormatVersion() throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        try bundle.set(["format"], .string("edgediff-bundle/3"))
        assertRefused("unsupported_format") { _ = try bundle.load() }
        try bundle.set(["format"], nil)
        assertRefused("unsupported_format") { _ = try bundle.load() }
    }

    func testChecksumMismatch() throws {
        let bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        let unet = bundle.dir.appendingPathComponent("unet.onnx")
        var bytes = [UInt8](try Data(contentsOf: unet))
        bytes[10] &+= 1  // same size, one byte changed
        try Data(bytes).write(to: unet)
        let error = assertRefused("checksum_mismatch") { _ = try bundle.load() }
        if case .checksumMismatch(let file, _, _)? = error { XCTAssertEqual(file, "unet.onnx") }
        _ = try BundleManifest.load(bundle.dir, verifyChecksums: false)  // sizes still match: only hashing catches it
    }

    func testTruncatedCopyAndMissingFile() throws {
        let bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        let vae = bundle.dir.appendingPathComponent("vae_decoder.onnx")
        try Data(try Data(contentsOf: vae).prefix(100)).write(to: vae)
        assertRefused("size_mismatch") { _ = try bundle.load() }
        try FileManager.default.removeItem(at: vae)
        assertRefused("missing_file") { _ = try bundle.load() }
        try FileManager.default.removeItem(at: bundle.dir.appendingPathComponent("manifest.json"))
        assertRefused("missing_file") { _ = try bundle.load() }
    }

    func testUnsupportedScheduler() throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        try bundle.set(["pipeline", "scheduler", "class_name"], .string("KarrasVeScheduler"))
        assertRefused("unsupported_scheduler") { _ = try bundle.load() }
        try bundle.set(["pipeline", "scheduler", "class_name"], .string("DPMSolverMultistepScheduler"))
        try bundle.set(["pipeline", "scheduler", "tables", "format"], .string("edgediff-scheduler-tables/9"))
        assertRefused("unsupported_scheduler") { _ = try bundle.load() }
        // A bundle without tables opens, and says why it cannot make an image when asked to.
        try bundle.set(["pipeline", "scheduler", "tables"], nil)
        try bundle.set(["pipeline", "scheduler", "tables_error"], .string("PNDM with Runge-Kutta warm-up steps is not supported"))
        let manifest = try bundle.load()
        let pipeline = try TextToImage(manifest: manifest, sessions: NoSessions())
        assertRefused("unsupported_scheduler") { _ = try pipeline.scheduler() }
        assertRefused("unsupported_scheduler") { _ = try pipeline.scheduler(steps: 4) }
    }

    func testPathOutsideTheBundle() throws {
        let folder = try TestEnv.temporaryFolder(self)
        var bundle = try BundleBuilder(in: folder)
        let outside = folder.appendingPathComponent("outside.onnx")
        try Data(repeating: 0, count: 10).write(to: outside)
        for path in ["../outside.onnx", outside.path, "tokenizer/../../outside.onnx", "~/outside.onnx"] {
            try bundle.set(["components", "unet", "file"], .string(path))
            let error = assertRefused("path_outside_bundle") { _ = try bundle.load() }
            XCTAssertEqual(error, .pathOutsideBundle(path: path))
        }
        // a symbolic link inside the folder that leads out of it
        try FileManager.default.createSymbolicLink(at: bundle.dir.appendingPathComponent("link.onnx"), withDestinationURL: outside)
        try bundle.set(["components", "unet", "file"], .string("link.onnx"))
        assertRefused("path_outside_bundle") { _ = try bundle.load() }
        try bundle.set(["components", "unet", "file"], .string("unet.onnx"))
        try bundle.set(["tokenizer", "vocab"], .string("../../etc/passwd"))
        assertRefused("path_outside_bundle") { _ = try bundle.load() }
    }

    func testAPackageFolderLinkingOutsideIsRefused() throws {
        let folder = try TestEnv.temporaryFolder(self)
        let bundle = try BundleBuilder(in: folder)
        let package = bundle.dir.appendingPathComponent("unet.mlpackage", isDirectory: true)
        try FileManager.default.createDirectory(at: package, withIntermediateDirectories: true)
        let secret = folder.appendingPathComponent("secret.bin")
        try Data("secret".utf8).write(to: secret)
        try FileManager.default.createSymbolicLink(at: package.appendingPathComponent("weights.bin"), withDestinationURL: secret)
        assertRefused("path_outside_bundle") { _ = try BundleFiles.sha256Path(package, root: bundle.dir) }
    }

    func testWrongKeyTypesNameTheKey() throws {
        let folder = try TestEnv.temporaryFolder(self)
        let cases: [([String], JSONValue, String)] = [
            (["pipeline", "latent_shape"], .string("1x4x8x8"), "pipeline.latent_shape"),
            (["components", "unet", "sha256"], .string("not-a-checksum"), "components.unet.sha256"),
            (["components", "unet", "bytes"], .number(-3), "components.unet.bytes"),
            (["tokenizer", "max_length"], .string("77"), "tokenizer.max_length"),
            (["backend"], .string("tensorflow"), "backend"),
        ]
        for (index, entry) in cases.enumerated() {
            var bundle = try BundleBuilder(in: folder, name: "bundle\(index)")
            try bundle.set(entry.0, entry.1)
            let error = assertRefused("invalid_manifest") { _ = try bundle.load() }
            if case .invalidManifest(let key, _)? = error { XCTAssertEqual(key, entry.2) }
        }
        var bundle = try BundleBuilder(in: folder, name: "names")
        var unet = bundle.manifest["components"]?["unet"]?.objectValue ?? [:]
        unet["inputs"] = .array([.object(["name": .number(5), "shape": .array([])])])
        try bundle.set(["components", "unet"], .object(unet))
        let error = assertRefused("invalid_manifest") { _ = try bundle.load() }
        if case .invalidManifest(let key, _)? = error { XCTAssertEqual(key, "components.unet.inputs[0].name") }
    }

    func testVersion1ToleratesPythonsNonFiniteLiteralsVersion2IsStrict() throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        func withNonFinite() -> String {
            JSONValue.object(bundle.manifest).serialized()
                .replacingOccurrences(of: "\"scheduler\": {", with: "\"scheduler\": {\"config\": {\"lambda_min_clipped\": -Infinity, \"x\": NaN},")
        }
        XCTAssertTrue(withNonFinite().contains("-Infinity"))
        try bundle.writeText(withNonFinite())
        _ = try bundle.load()
        try bundle.set(["format"], .string("edgediff-bundle/2"))
        try bundle.set(["edgediff_version"], .string("0.9.0"))
        try bundle.writeText(withNonFinite())
        let strict = assertRefused("invalid_manifest") { _ = try bundle.load() }
        if case .invalidManifest(let key, _)? = strict { XCTAssertEqual(key, "(document)") }
        try bundle.set(["edgediff_version"], nil)
        let missing = assertRefused("invalid_manifest") { _ = try bundle.load() }
        if case .invalidManifest(let key, _)? = missing { XCTAssertEqual(key, "edgediff_version") }
        try bundle.set(["edgediff_version"], .string("0.9.0"))
        XCTAssertEqual(try bundle.load().edgediffVersion, "0.9.0")
    }

    func testOverMemoryBudget() throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        let small = try bundle.load()
        try small.checkMemoryBudget(budgetMB: 1)  // three files of ~1 KB
        assertRefused("over_memory_budget") { try small.checkMemoryBudget(budgetMB: 0) }
        // What the bundle records for a target decides: resident, one at a time, or refused.
        try bundle.set(["memory"], .object(["peak_mb": .number(2600), "budget_mb": .number(3000), "target": .string("iphone-15-pro"),
                                           "components": .object(["text_encoder": .number(250), "unet": .number(1700),
                                                                  "vae_decoder": .number(400)])]))
        let recorded = try bundle.load()
        XCTAssertEqual(try MemoryPlan.plan(manifest: recorded, deviceBudgetMB: 6000).strategy, .allResident)
        let tight = try MemoryPlan.plan(manifest: recorded, deviceBudgetMB: 2000)
        XCTAssertEqual(tight.strategy, .oneAtATime)
        XCTAssertTrue(tight.explanation.contains("one at a time"), tight.explanation)
        XCTAssertEqual(assertRefused("over_memory_budget") { _ = try MemoryPlan.plan(manifest: recorded, deviceBudgetMB: 1500) },
                       .overMemoryBudget(neededMB: 1700, budgetMB: 1500))
    }

    func testTheMemorySectionIsReadAndOneRuleDecidesTheSameAsKotlins() throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        try bundle.set(["memory"], .object([
            "peak_mb": .number(2350), "budget_mb": .number(3000), "target": .string("pixel-8"),
            "components": .object(["text_encoder": .number(250), "unet": .number(1700), "vae_decoder": .number(400)]),
        ]))
        let measured = try bundle.load()
        XCTAssertEqual(measured.memory, MemorySpec(peakMB: 2350, componentPeakMB: ["text_encoder": 250, "unet": 1700, "vae_decoder": 400],
                                                   budgetMB: 3000, target: "pixel-8"))
        // The sum exceeds the budget but each component fits: loaded one at a time, not refused.
        XCTAssertEqual(try MemoryPlan.plan(manifest: measured, deviceBudgetMB: 6000).strategy, .allResident)
        XCTAssertEqual(try MemoryPlan.plan(manifest: measured, deviceBudgetMB: 2000).strategy, .oneAtATime)
        try measured.checkMemoryBudget(budgetMB: 2000)
        XCTAssertEqual(assertRefused("over_memory_budget") { _ = try MemoryPlan.plan(manifest: measured, deviceBudgetMB: 1500) },
                       .overMemoryBudget(neededMB: 1700, budgetMB: 1500))
        // The recorded plan is followed when the device gives at least the budget it was made for...
        try bundle.set(["memory", "budget_mb"], .number(2000))
        try bundle.set(["memory", "plan"], .string("sequential"))
        try bundle.set(["memory", "note"], .string("2350 MB with every component loaded exceeds pixel-8's 2000 MB budget"))
        let planned = try bundle.load()
        XCTAssertEqual(planned.memory?.plan, "sequential")
        XCTAssertEqual(try MemoryPlan.plan(manifest: planned, deviceBudgetMB: nil).strategy, .oneAtATime)
        XCTAssertEqual(try MemoryPlan.plan(manifest: planned, deviceBudgetMB: 8000).strategy, .oneAtATime)
        try bundle.set(["memory", "plan"], .string("all resident"))
        XCTAssertEqual(try MemoryPlan.plan(manifest: try bundle.load(), deviceBudgetMB: nil).strategy, .allResident)
        // ... and recomputed when the device gives less than that.
        let allResident = try bundle.load()
        assertRefused("over_memory_budget") { _ = try MemoryPlan.plan(manifest: allResident, deviceBudgetMB: 1000) }
        try bundle.set(["memory", "plan"], .string("does not fit"))
        let doesNotFit = try bundle.load()
        XCTAssertEqual(assertRefused("over_memory_budget") { _ = try MemoryPlan.plan(manifest: doesNotFit, deviceBudgetMB: nil) },
                       .overMemoryBudget(neededMB: 1700, budgetMB: 2000))
    }

    func testTheManifestFileItselfMayBeGivenInsteadOfItsFolder() throws {
        let bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        XCTAssertEqual(try BundleManifest.load(bundle.dir).manifestSha256,
                       try BundleManifest.load(bundle.dir.appendingPathComponent("manifest.json")).manifestSha256)
    }

    func testEverySharedManifestCaseGivesTheAnswerKotlinGives() throws {
        let folder = try TestEnv.temporaryFolder(self)
        let cases = try JSONValue.read(TestEnv.golden.appendingPathComponent("manifest_cases.json"))["cases"]?.arrayValue ?? []
        XCTAssertGreaterThan(cases.count, 30)
        var wrong: [String] = []
        for (index, entry) in cases.enumerated() {
            let bundle = try BundleBuilder(in: folder, name: "case\(index)")
            var root = JSONValue.object(bundle.manifest)
            var raws: [String] = []
            for pair in entry["set"]?.arrayValue ?? [] {
                guard let items = pair.arrayValue, let value = items.last else { continue }
                var replacement: JSONValue? = value
                if value["$delete"]?.boolValue == true { replacement = nil }
                if let raw = value["$raw"]?.stringValue {
                    replacement = .string("@@RAW\(raws.count)@@")
                    raws.append(raw)
                }
                root = BundleBuilder.applying(root, items.dropLast(), replacement)
            }
            var text = root.serialized()
            for (i, raw) in raws.enumerated() { text = text.replacingOccurrences(of: "\"@@RAW\(i)@@\"", with: raw) }
            if let whole = entry["document"]?.stringValue {
                text = whole
            } else {
                text = (entry["prefix"]?.stringValue ?? "") + text
            }
            try bundle.writeText(text)
            let expect = entry["expect"]
            let want = expect?["loads"]?.boolValue == true
                ? "loads" : [expect?["code"]?.stringValue, expect?["key"]?.stringValue].compactMap { $0 }.joined(separator: " ")
            let got: String
            do {
                _ = try bundle.load()
                got = "loads"
            } catch let error as BundleError {
                if case .invalidManifest(let key, _) = error { got = "\(error.code) \(key)" } else { got = error.code }
            }
            if got != want { wrong.append("\(entry["name"]?.stringValue ?? "?"): expected \(want), got \(got)") }
        }
        XCTAssertEqual(wrong, [])
    }

    func testAManifestCutAnywhereIsRefusedByANamedCheck() throws {
        let bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        let text = JSONValue.object(bundle.manifest).serialized()
        var codes: [String: Int] = [:]
        let scalars = Array(text.unicodeScalars)
        for cut in stride(from: 0, to: scalars.count, by: max(1, scalars.count / 400)) {
            try bundle.writeText(String(String.UnicodeScalarView(scalars[0..<cut])))
            do {
                _ = try bundle.load()
                XCTFail("a manifest cut at \(cut) of \(scalars.count) characters was accepted")
            } catch let error as BundleError {
                codes[error.code, default: 0] += 1
            }
        }
        XCTAssertEqual(Set(codes.keys), ["invalid_json"])
    }

    func testSha256OfFilesAndPackageFoldersIsEdgediffs() throws {
        XCTAssertEqual(SHA256.hex(of: "abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(of: String(repeating: "a", count: 1000)), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
        XCTAssertEqual(SHA256.hex(of: ""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // A package laid out like an .mlpackage; "a/b" sorts before "a.b" part by part, as Python's pathlib does.
        let folder = try TestEnv.temporaryFolder(self)
        let package = folder.appendingPathComponent("x.mlpackage", isDirectory: true)
        let files: [(String, [UInt8])] = [
            ("Manifest.json", Array("manifest".utf8)), ("Data/com.apple.CoreML/model.mlmodel", Array("model bytes".utf8)),
            ("Data/com.apple.CoreML/weights/weight.bin", [0, 1, 2] + Array("weights".utf8)), ("a/b", Array("slash".utf8)),
            ("a.b", Array("dot".utf8)),
        ]
        for (path, bytes) in files {
            let url = package.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes).write(to: url)
        }
        // edgediff/runtime/manifest.py sha256_path of the same folder
        XCTAssertEqual(try BundleFiles.sha256Path(package, root: folder), "a98fb0204af3085c265254b100bace97e99660df73dfa2f9ad3f2b8e0c6a2c3e")
    }
}

/// A provider that has no sessions: for checks that must fail before any model is needed.
struct NoSessions: SessionProvider {
    func session(for component: ComponentSpec) async throws -> any InferenceSession {
        throw BundleError.sessionFailed(component: component.name, detail: "no runtime in this test")
    }

    func release(_ component: String) async {}
}
