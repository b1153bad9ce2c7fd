#if canImport(CoreML)
import CoreML
import EdgediffKit
import Foundation

/// Compiled Core ML models (.mlmodelc), compiled once per package and kept in Application Support, keyed by the
/// package's sha256 (the manifest's, already verified; a changed package gets a new key, so a stale compile is never
/// loaded). Compiling a large UNet takes tens of seconds; every later launch loads the cached copy.
public actor CompiledModelCache {
    public let directory: URL
    private var inFlight: [String: Task<URL, Error>] = [:]

    public init(directory: URL) {
        self.directory = directory
    }

    /// The cache in the app's Application Support folder (not backed up to iCloud: it can always be rebuilt).
    public static func applicationSupport() throws -> CompiledModelCache {
        do {
            let base = try FileManager.default.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
            return CompiledModelCache(directory: base.appendingPathComponent("EdgediffCompiledModels", isDirectory: true))
        } catch {
            throw BundleError.unreadableFile(path: "Application Support", reason: error.localizedDescription)
        }
    }

    /// The compiled model for `chunk` and how long compiling it took now (zero when it was cached or is already
    /// compiled in the bundle).
    public func compiledModel(for chunk: ChunkSpec, component: String) async throws -> (url: URL, compileMs: Double) {
        if chunk.file.pathExtension == "mlmodelc" { return (chunk.file, 0) }
        let key = try cacheKey(chunk)
        let destination = directory.appendingPathComponent("\(key).mlmodelc", isDirectory: true)
        if FileManager.default.fileExists(atPath: destination.path) { return (destination, 0) }
        if let running = inFlight[key] {
            return (try await running.value, 0)
        }
        let clock = ContinuousClock()
        let start = clock.now
        let source = chunk.file
        let folder = directory
        let task = Task<URL, Error> {
            try await CompiledModelCache.compile(source, into: destination, folder: folder, component: component)
        }
        inFlight[key] = task
        defer { inFlight[key] = nil }
        let url = try await task.value
        return (url, milliseconds(clock.now - start))
    }

    /// Drops a cached compile (e.g. one that no longer loads after an OS update) so the next open compiles again.
    public func evict(_ chunk: ChunkSpec) throws {
        guard chunk.file.pathExtension != "mlmodelc" else { return }
        let destination = directory.appendingPathComponent("\(try cacheKey(chunk)).mlmodelc", isDirectory: true)
        try? FileManager.default.removeItem(at: destination)
    }

    /// Removes every cached compile.
    public func clear() {
        try? FileManager.default.removeItem(at: directory)
    }

    func cacheKey(_ chunk: ChunkSpec) throws -> String {
        if let sha = chunk.sha256 { return sha }
        return try BundleFiles.sha256Path(chunk.file, root: chunk.file.deletingLastPathComponent())
    }

    /// `MLModel.compileModel(at:)` writes to a temporary folder; the result is moved into the cache under its key.
    static func compile(_ source: URL, into destination: URL, folder: URL, component: String) async throws -> URL {
        let temporary: URL
        do {
            temporary = try await MLModel.compileModel(at: source)
        } catch {
            throw BundleError.sessionFailed(
                component: component,
                detail: "Core ML could not compile \(source.lastPathComponent) (\(error.localizedDescription)); "
                    + "the package may need a newer iOS, re-convert it with a lower minimum deployment target")
        }
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            if FileManager.default.fileExists(atPath: destination.path) {
                try FileManager.default.removeItem(at: destination)
            }
            try FileManager.default.moveItem(at: temporary, to: destination)
            var values = URLResourceValues()
            values.isExcludedFromBackup = true
            var stored = destination
            try? stored.setResourceValues(values)
        } catch {
            throw BundleError.unreadableFile(path: destination.path, reason: "cannot store the compiled model: \(error.localizedDescription)")
        }
        return destination
    }
}
#endif
