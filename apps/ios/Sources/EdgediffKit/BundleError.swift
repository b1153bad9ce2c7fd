import Foundation

/// Every way a bundle (or a run over it) can be refused, each with a message a user can act on.
///
/// Input is hostile: whatever a bundle holds, the app shows one of these instead of crashing. The cases and their
/// `code`s are those of `BundleError` in the Kotlin core (apps/android/core), so both apps name the same problem
/// the same way and tests match the code, not the wording. `unreadableFile` is the one Swift-only case: Foundation
/// reports I/O failures as errors where the JVM throws IOException.
public enum BundleError: Error, Equatable, Sendable, LocalizedError, CustomStringConvertible {
    /// A component the pipeline needs (text_encoder, unet, vae_decoder) is not in the manifest.
    case missingComponent(component: String, have: [String])
    /// A file the manifest lists (or manifest.json itself) is not in the bundle folder.
    case missingFile(path: String)
    /// manifest.json says a format this reader does not know (or none).
    case unsupportedFormat(found: String?)
    /// A file's (or .mlpackage folder's) sha256 differs from the manifest's: corrupt, truncated or replaced.
    case checksumMismatch(file: String, expected: String, actual: String)
    /// A file's size differs from the manifest's (an interrupted copy, typically).
    case sizeMismatch(file: String, expected: Int, actual: Int)
    /// A path in the manifest points outside the bundle folder (absolute, `..`, or through a symbolic link).
    case pathOutsideBundle(path: String)
    /// The scheduler (or its tables) is one this runtime cannot run.
    case unsupportedScheduler(name: String, reason: String)
    /// The bundle was made for a backend this app has no session for.
    case unsupportedBackend(backend: String, available: [String])
    /// A key is missing or has the wrong type; `key` is the JSON path, e.g. `components.unet.inputs[0].name`.
    case invalidManifest(key: String, expected: String)
    /// A JSON file of the bundle (or of the golden files) does not parse.
    case invalidJson(file: String, detail: String)
    /// The models need more memory than the device may give the app, even loaded one at a time.
    case overMemoryBudget(neededMB: Int, budgetMB: Int)
    /// A tensor does not have the shape or type the manifest or the golden files promise.
    case invalidTensor(name: String, detail: String)
    /// An image size the bundle does not make (or a malformed one); `detail` lists the sizes it has.
    case unsupportedSize(size: String, detail: String)
    /// The runtime could not load or run a component.
    case sessionFailed(component: String, detail: String)
    /// A file exists but cannot be read (permissions, a file provider that is offline).
    case unreadableFile(path: String, reason: String)

    /// A stable identifier of the case, shared with the Kotlin core.
    public var code: String {
        switch self {
        case .missingComponent: return "missing_component"
        case .missingFile: return "missing_file"
        case .unsupportedFormat: return "unsupported_format"
        case .checksumMismatch: return "checksum_mismatch"
        case .sizeMismatch: return "size_mismatch"
        case .pathOutsideBundle: return "path_outside_bundle"
        case .unsupportedScheduler: return "unsupported_scheduler"
        case .unsupportedBackend: return "unsupported_backend"
        case .invalidManifest: return "invalid_manifest"
        case .invalidJson: return "invalid_json"
        case .overMemoryBudget: return "over_memory_budget"
        case .invalidTensor: return "invalid_tensor"
        case .unsupportedSize: return "unsupported_size"
        case .sessionFailed: return "session_failed"
        case .unreadableFile: return "unreadable_file"
        }
    }

    public var errorDescription: String? { description }

    public var description: String {
        switch self {
        case .missingComponent(let component, let have):
            let list = have.isEmpty ? "none" : have.sorted().joined(separator: ", ")
            return "The bundle has no \(component) component (it has: \(list)). "
                + "Re-run `edgediff convert` with --components text_encoder,unet,vae_decoder."
        case .missingFile(let path):
            return "The bundle file \(path) is missing. Copy the whole bundle folder, not just manifest.json."
        case .unsupportedFormat(let found):
            let got = found.map { "'\($0)'" } ?? "(none)"
            let known = BundleManifest.formats.map { "'\($0)'" }.joined(separator: " or ")
            return "manifest.json has format \(got); this app reads \(known). Re-create the bundle with a matching edgediff."
        case .checksumMismatch(let file, let expected, let actual):
            return "\(file) has sha256 \(actual.prefix(12))… but the manifest says \(expected.prefix(12))…. "
                + "The file is corrupt or was replaced: copy the bundle again."
        case .sizeMismatch(let file, let expected, let actual):
            return "\(file) has \(actual) bytes but the manifest says \(expected). The copy is incomplete: copy it again."
        case .pathOutsideBundle(let path):
            return "The manifest path '\(path)' points outside the bundle folder. The manifest is corrupt or hostile; it was refused."
        case .unsupportedScheduler(let name, let reason):
            return "The scheduler '\(name)' cannot run here: \(reason)."
        case .unsupportedBackend(let backend, let available):
            return "This bundle is for '\(backend)'; this app runs \(available.joined(separator: ", ")) bundles. "
                + "Convert with `edgediff convert --target \(available.first ?? "coreml")`."
        case .invalidManifest(let key, let expected):
            return "manifest.json: \(key) should be \(expected). Re-create the bundle with `edgediff convert`."
        case .invalidJson(let file, let detail):
            return "\(file) is not valid JSON (\(detail)). The file is truncated or corrupt: copy it again."
        case .overMemoryBudget(let neededMB, let budgetMB):
            return "The bundle's models need about \(neededMB) MB but only \(budgetMB) MB are available. "
                + "Use a smaller precision (fp16, 6-bit palettized weights), a chunked UNet or a smaller model."
        case .invalidTensor(let name, let detail):
            return "Tensor \(name): \(detail)."
        case .unsupportedSize(let size, let detail):
            return "No \(size) image from this bundle: \(detail)."
        case .sessionFailed(let component, let detail):
            return "\(component): the runtime failed: \(detail)."
        case .unreadableFile(let path, let reason):
            return "\(path) cannot be read (\(reason))."
        }
    }
}
