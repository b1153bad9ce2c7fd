import Foundation

/// One image size a bundle makes, in pixels. Written WIDTHxHEIGHT as users type it and as edgediff names LiteRT
/// signatures; kept as (height, width) like the manifest's `pipeline.sizes` (edgediff/runtime/sizes.py).
public struct ImageSize: Sendable, Equatable, Hashable, CustomStringConvertible {
    public let height: Int
    public let width: Int

    public init(height: Int, width: Int) {
        self.height = height
        self.width = width
    }

    public var name: String { "\(width)x\(height)" }

    public var description: String { name }

    public static let defaultSignature = "serving_default"
    public static let signaturePrefix = "size_"
    public static let maxSide = 1 << 14

    /// The LiteRT signature holding this size in a bundle whose first size is `first` (edgediff/model/sizes.py).
    public func signature(first: ImageSize) -> String {
        self == first ? ImageSize.defaultSignature : ImageSize.signaturePrefix + name
    }

    /// "64x64, 96x64 (width x height)": how both cores and the CLI list a bundle's sizes.
    public static func describe(_ sizes: [ImageSize]) -> String {
        sizes.map { $0.name }.joined(separator: ", ") + " (width x height)"
    }
}

/// The sizes of a bundle and the rules every size request goes through, the same in both cores (Kotlin
/// `ImageSizes`) and in the Python runtime: the first size is pipeline.height x width (the latent shape's); a bundle
/// converted with several sizes lists them all in `pipeline.sizes`; a size it lacks is refused naming the ones it has.
public enum ImageSizes {
    /// `pipeline.sizes` checked as runtime/sizes.py checks it; absent: the one size the latent shape gives.
    static func parse(_ value: JSONValue?, latent: [Int], height: Int?, width: Int?) throws -> [ImageSize] {
        var factor = 8
        if let h = height, h > 0, h % latent[2] == 0 { factor = h / latent[2] }
        let first = ImageSize(height: height ?? latent[2] * factor, width: width ?? latent[3] * factor)
        guard let value = value, !value.isNull else { return [first] }
        let expected = "a non-empty list of [height, width] pixel pairs (integers 8..\(ImageSize.maxSide)), the first "
            + "pipeline.height x width, no size twice"
        guard let list = value.arrayValue else { throw BundleError.invalidManifest(key: "pipeline.sizes", expected: expected) }
        var sizes: [ImageSize] = []
        for (index, item) in list.enumerated() {
            let values = (item.arrayValue ?? []).compactMap { $0.intValue }.filter { (8...ImageSize.maxSide).contains($0) }
            guard let pair = item.arrayValue, pair.count == 2, values.count == 2 else {
                throw BundleError.invalidManifest(key: "pipeline.sizes[\(index)]", expected: expected)
            }
            sizes.append(ImageSize(height: values[0], width: values[1]))
        }
        guard let head = sizes.first, height != nil, width != nil, head == first, Set(sizes).count == sizes.count else {
            throw BundleError.invalidManifest(key: "pipeline.sizes", expected: expected)
        }
        for size in sizes where size.height % factor != 0 || size.width % factor != 0 {
            throw BundleError.invalidManifest(
                key: "pipeline.sizes", expected: "sizes that are multiples of the latent factor \(factor) (\(size) is not)")
        }
        return sizes
    }

    /// Pixels per latent cell (the VAE's downscale, 8 for Stable Diffusion).
    public static func latentFactor(_ manifest: BundleManifest) -> Int {
        guard let first = manifest.pipeline.sizes.first else { return 8 }
        return max(1, first.height / manifest.pipeline.latentShape[2])
    }

    /// The requested size if the bundle makes it; its first size when neither side is given.
    public static func pick(_ manifest: BundleManifest, height: Int?, width: Int?) throws -> ImageSize {
        let sizes = manifest.pipeline.sizes
        let have = ImageSize.describe(sizes)
        guard let h = height, let w = width else {
            if height == nil && width == nil, let first = sizes.first { return first }
            let text = "\(width.map(String.init) ?? "?")x\(height.map(String.init) ?? "?")"
            throw BundleError.unsupportedSize(size: text, detail: "give both height and width; this bundle makes \(have)")
        }
        let wanted = ImageSize(height: h, width: w)
        let factor = latentFactor(manifest)
        guard h > 0, w > 0, h % factor == 0, w % factor == 0 else {
            throw BundleError.unsupportedSize(
                size: wanted.name, detail: "not a positive multiple of \(factor) (the latent factor); this bundle makes \(have)")
        }
        guard sizes.contains(wanted) else {
            throw BundleError.unsupportedSize(
                size: wanted.name, detail: "this bundle makes \(have); convert with --size \(wanted.name) to get it")
        }
        return wanted
    }

    /// [1, channels, height / factor, width / factor]: the latent of one image at `size`.
    public static func latentShape(_ manifest: BundleManifest, size: ImageSize) -> [Int] {
        let base = manifest.pipeline.latentShape
        let factor = latentFactor(manifest)
        return [base[0], base[1], size.height / factor, size.width / factor]
    }

    /// Which of a LiteRT model's signatures takes inputs of these shapes (`signatures`: name and its input shapes in
    /// feed order; `feeds` in the same order): a bundle with several sizes holds one signature per size, weights
    /// shared, and a run goes to the one of its size, as the Python runtime's LiteRTSession does. One signature:
    /// always that one (the runtime reports a wrong shape itself).
    public static func chooseSignature(_ signatures: [(name: String, shapes: [[Int]])], feeds: [[Int]]) throws -> Int {
        if signatures.count <= 1 { return 0 }
        if let index = signatures.firstIndex(where: { $0.shapes == feeds }) { return index }
        func spatial(_ shapes: [[Int]]) -> String {
            shapes.filter { $0.count == 4 }.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }.joined(separator: ", ")
        }
        let have = signatures.map { "\($0.name) \(spatial($0.shapes))" }.joined(separator: "; ")
        throw BundleError.unsupportedSize(
            size: spatial(feeds), detail: "the model has no signature for these inputs; its signatures take \(have)")
    }
}
