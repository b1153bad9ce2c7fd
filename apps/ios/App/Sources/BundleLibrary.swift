import EdgediffKit
import Foundation

/// A bundle folder the app can open, and where it came from.
struct BundleEntry: Identifiable, Hashable, Sendable {
    enum Source: String, Sendable {
        case app = "in the app"
        case documents = "on this iPhone"
    }

    let url: URL
    let source: Source

    var id: URL { url }
    var name: String { url.lastPathComponent }
    /// `edgediff bundle-golden` writes BUNDLE/golden by default; with it, the app can check itself.
    var goldenFolder: URL? {
        let folder = url.appendingPathComponent("golden", isDirectory: true)
        return FileManager.default.fileExists(atPath: folder.appendingPathComponent("golden.json").path) ? folder : nil
    }
}

/// Finds bundles (folders with a manifest.json) shipped in the app or added through Files / Finder file sharing,
/// and imports a folder picked in Files into the app's Documents.
enum BundleLibrary {
    /// Documents/ is what Finder file sharing (UIFileSharingEnabled) and the Files app show for this app.
    static var documents: URL {
        FileManager.default.urls(for: .documentDirectory, in: .userDomainMask).first
            ?? FileManager.default.temporaryDirectory
    }

    static var importedFolder: URL { documents.appendingPathComponent("bundles", isDirectory: true) }
    static var reportsFolder: URL { documents.appendingPathComponent("Benchmarks", isDirectory: true) }

    /// Every bundle the app can see: in its own resources (App/bundles), at the top of Documents, in Documents/bundles.
    static func discover() -> [BundleEntry] {
        var found: [BundleEntry] = []
        if let shipped = Bundle.main.resourceURL?.appendingPathComponent("bundles", isDirectory: true) {
            found += bundles(in: shipped, source: .app)
        }
        found += bundles(in: documents, source: .documents)
        found += bundles(in: importedFolder, source: .documents)
        var seen = Set<URL>()
        return found.filter { seen.insert($0.url.standardizedFileURL).inserted }
    }

    /// Folders directly inside `folder` that hold a manifest.json (one level of `DIR/<backend>/` is looked into,
    /// as `edgediff convert` writes it).
    static func bundles(in folder: URL, source: BundleEntry.Source) -> [BundleEntry] {
        let manager = FileManager.default
        guard let children = try? manager.contentsOfDirectory(at: folder, includingPropertiesForKeys: [.isDirectoryKey],
                                                                options: [.skipsHiddenFiles]) else { return [] }
        var found: [BundleEntry] = []
        for child in children.sorted(by: { $0.lastPathComponent < $1.lastPathComponent }) {
            if manager.fileExists(atPath: child.appendingPathComponent("manifest.json").path) {
                found.append(BundleEntry(url: child, source: source))
                continue
            }
            let nested = child.appendingPathComponent("coreml", isDirectory: true)
            if manager.fileExists(atPath: nested.appendingPathComponent("manifest.json").path) {
                found.append(BundleEntry(url: nested, source: source))
            }
        }
        return found
    }

    /// Copies a bundle folder picked in Files into Documents/bundles. The manifest is read first (without hashing)
    /// so a folder that is no bundle is refused before gigabytes are copied; the full check runs when it is opened.
    static func importBundle(from picked: URL) async throws -> BundleEntry {
        let target = importedFolder.appendingPathComponent(picked.lastPathComponent, isDirectory: true)
        try await Task.detached(priority: .userInitiated) {
            let scoped = picked.startAccessingSecurityScopedResource()
            defer { if scoped { picked.stopAccessingSecurityScopedResource() } }
            _ = try BundleManifest.load(picked, verifyChecksums: false)
            let manager = FileManager.default
            do {
                try manager.createDirectory(at: importedFolder, withIntermediateDirectories: true)
                if manager.fileExists(atPath: target.path) { try manager.removeItem(at: target) }
                try manager.copyItem(at: picked, to: target)
            } catch {
                throw BundleError.unreadableFile(path: picked.lastPathComponent, reason: "copying it into the app failed: \(error.localizedDescription)")
            }
        }.value
        return BundleEntry(url: target, source: .documents)
    }
}
