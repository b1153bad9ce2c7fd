import Foundation
import XCTest
@testable import EdgediffKit

/// Where the tests find their inputs: the repository around this file (located from `#filePath`), its golden
/// files (apps/golden/<model>, written by `edgediff bundle-golden`) and its models' tokenizers.
enum TestEnv {
    /// apps/ios/Tests/EdgediffKitTests/TestSupport.swift -> the repository root.
    static let repo: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<5 { url.deleteLastPathComponent() }
        return url
    }()

    static let golden = repo.appendingPathComponent("apps/golden", isDirectory: true)
    static let goldenModels = ["shapes-sd", "shapes-sd-step4", "shapes-sd-lcm4"]

    /// The golden files of `model`; a missing folder fails the test with the command that writes it.
    static func goldenFiles(_ model: String, file: StaticString = #filePath, line: UInt = #line) throws -> GoldenFiles {
        let dir = golden.appendingPathComponent(model, isDirectory: true)
        guard FileManager.default.fileExists(atPath: dir.appendingPathComponent("golden.json").path) else {
            XCTFail("\(dir.path) is missing: run apps/golden/regenerate.sh", file: file, line: line)
            throw BundleError.missingFile(path: dir.path)
        }
        return try GoldenFiles(dir: dir)
    }

    /// The tokenizer folder of a model in the repository (identical to the one its bundles carry).
    static func tokenizerFolder(_ model: String) -> URL {
        repo.appendingPathComponent("models/\(model)/tokenizer", isDirectory: true)
    }

    static func tokenizer(_ model: String) throws -> ClipTokenizer {
        let folder = tokenizerFolder(model)
        return try ClipTokenizer(vocab: folder.appendingPathComponent("vocab.json"), merges: folder.appendingPathComponent("merges.txt"),
                                 maxLength: 77, special: try ClipTokenizer.SpecialTokens.read(folder: folder))
    }

    /// A fresh temporary folder, removed when the test ends.
    static func temporaryFolder(_ test: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("edgediff-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}

/// Fails naming the first element whose bits differ (a float compare would let -0 == 0 and NaN != NaN through).
func assertBits(_ expected: [Float], _ actual: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(expected.count, actual.count, "\(what) length", file: file, line: line)
    if let first = zip(expected, actual).enumerated().first(where: { $0.element.0.bitPattern != $0.element.1.bitPattern }) {
        XCTFail("\(what): first differing value at \(first.offset): numpy \(first.element.0) vs \(first.element.1)", file: file, line: line)
    }
}

/// Builds small but complete bundles: model files with real checksums, the repo's tokenizer, the default model's
/// scheduler tables; a test breaks one thing and expects exactly that check to fail.
struct BundleBuilder {
    let dir: URL
    var manifest: [String: JSONValue]

    static func tensor(_ name: String, _ shape: [Int], _ dtype: String = "float32") -> JSONValue {
        let dims: [JSONValue] = shape.map { JSONValue.number(Double($0)) }
        return .object(["name": .string(name), "shape": .array(dims), "dtype": .string(dtype)])
    }

    /// A valid edgediff-bundle/1 folder (an onnxruntime bundle, so nothing here needs Core ML).
    init(in parent: URL, name: String = "bundle", model: String = "shapes-sd", unetBatch: Int = 2, timeCondDim: Int? = nil) throws {
        dir = parent.appendingPathComponent(name, isDirectory: true)
        let manager = FileManager.default
        try manager.createDirectory(at: dir, withIntermediateDirectories: true)
        var components: [String: JSONValue] = [:]
        var unetInputs = [BundleBuilder.tensor("sample", [unetBatch, 4, 8, 8]), BundleBuilder.tensor("timestep", [unetBatch]),
                          BundleBuilder.tensor("encoder_hidden_states", [unetBatch, 77, 32])]
        if let timeCondDim { unetInputs.append(BundleBuilder.tensor("timestep_cond", [unetBatch, timeCondDim])) }
        let specs: [(String, String, [JSONValue], [JSONValue])] = [
            ("text_encoder", "text_encoder.onnx", [BundleBuilder.tensor("input_ids", [1, 77], "int64")],
             [BundleBuilder.tensor("last_hidden_state", [1, 77, 32])]),
            ("unet", "unet.onnx", unetInputs, [BundleBuilder.tensor("noise_pred", [unetBatch, 4, 8, 8])]),
            ("vae_decoder", "vae_decoder.onnx", [BundleBuilder.tensor("latent", [1, 4, 8, 8])], [BundleBuilder.tensor("image", [1, 3, 64, 64])]),
        ]
        for (component, file, inputs, outputs) in specs {
            let bytes = (0..<(1000 + file.count)).map { UInt8(truncatingIfNeeded: $0 * 31 + component.count) }
            let url = dir.appendingPathComponent(file)
            try Data(bytes).write(to: url)
            let entry: [String: JSONValue] = [
                "file": .string(file), "sha256": .string(try BundleFiles.sha256File(url)), "bytes": .number(Double(bytes.count)),
                "inputs": .array(inputs), "outputs": .array(outputs),
            ]
            components[component] = .object(entry)
        }
        let tokenizer = dir.appendingPathComponent("tokenizer", isDirectory: true)
        try manager.createDirectory(at: tokenizer, withIntermediateDirectories: true)
        for file in ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"] {
            try manager.copyItem(at: TestEnv.tokenizerFolder(model).appendingPathComponent(file), to: tokenizer.appendingPathComponent(file))
        }
        let goldenDir = TestEnv.golden.appendingPathComponent(model, isDirectory: true)
        let golden = try JSONValue.read(goldenDir.appendingPathComponent("golden.json"))
        let tables = try JSONValue.read(goldenDir.appendingPathComponent("scheduler_tables.json"))
        let latentShape: [JSONValue] = [1, 4, 8, 8].map { JSONValue.number(Double($0)) }
        let guidance: [String: JSONValue] = [
            "scale": golden["guidance"] ?? .number(7.5), "batched_cfg": .bool(unetBatch == 2), "embedded": .bool(timeCondDim != nil),
        ]
        let scheduler: [String: JSONValue] = [
            "class_name": tables["class_name"] ?? .null, "num_inference_steps": tables["num_inference_steps"] ?? .null, "tables": tables,
        ]
        let pipeline: [String: JSONValue] = [
            "latent_shape": .array(latentShape), "height": .number(64), "width": .number(64),
            "vae_scaling_factor": golden["vae_scaling_factor"] ?? .number(0.18215),
            "guidance": .object(guidance), "scheduler": .object(scheduler),
        ]
        let tokenizerSection: [String: JSONValue] = [
            "vocab": .string("tokenizer/vocab.json"), "merges": .string("tokenizer/merges.txt"), "max_length": .number(77),
            "config": .string("tokenizer/tokenizer_config.json"),
        ]
        manifest = [
            "format": .string("edgediff-bundle/1"), "backend": .string("onnxruntime"), "precision": .string("fp32"),
            "components": .object(components), "pipeline": .object(pipeline), "tokenizer": .object(tokenizerSection),
        ]
        try write()
    }

    func write() throws {
        try Data(JSONValue.object(manifest).serialized().utf8).write(to: dir.appendingPathComponent("manifest.json"))
    }

    func writeText(_ text: String) throws {
        try Data(text.utf8).write(to: dir.appendingPathComponent("manifest.json"))
    }

    func load() throws -> BundleManifest { try BundleManifest.load(dir) }

    /// Replaces the value at a dotted path of objects, e.g. ["components", "unet", "file"].
    mutating func set(_ path: [String], _ value: JSONValue?) throws {
        manifest = try BundleBuilder.setting(.object(manifest), path[...], value).objectValue ?? manifest
        try write()
    }

    /// Sets `value` at a path of keys (strings) and list indices (numbers); missing objects are created, nil removes
    /// the key (the shared manifest cases, apps/golden/manifest_cases.json, use this).
    static func applying(_ node: JSONValue, _ path: ArraySlice<JSONValue>, _ value: JSONValue?) -> JSONValue {
        guard let step = path.first else { return value ?? .null }
        let rest = path.dropFirst()
        if let key = step.stringValue {
            var members = node.objectValue ?? [:]
            members[key] = rest.isEmpty ? value : applying(members[key] ?? .object([:]), rest, value)
            return .object(members)
        }
        if let index = step.intValue, var items = node.arrayValue, index >= 0, index < items.count {
            items[index] = rest.isEmpty ? (value ?? .null) : applying(items[index], rest, value)
            return .array(items)
        }
        return node
    }

    static func setting(_ node: JSONValue, _ path: ArraySlice<String>, _ value: JSONValue?) throws -> JSONValue {
        guard let key = path.first, var members = node.objectValue else { return node }
        if path.count == 1 {
            members[key] = value
        } else {
            members[key] = try setting(members[key] ?? .object([:]), path.dropFirst(), value)
        }
        return .object(members)
    }
}

/// Expects `body` to throw the `BundleError` with `code`, with a message long enough to say what to do.
@discardableResult
func assertRefused(_ code: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) -> BundleError? {
    do {
        try body()
        XCTFail("expected \(code), nothing was thrown", file: file, line: line)
    } catch let error as BundleError {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        XCTAssertGreaterThan(error.description.count, 20, "a message that says what to do: \(error)", file: file, line: line)
        return error
    } catch {
        XCTFail("expected BundleError \(code), got \(error)", file: file, line: line)
    }
    return nil
}
