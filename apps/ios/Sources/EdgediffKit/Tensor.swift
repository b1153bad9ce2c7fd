import Foundation

/// A named tensor the pipeline passes between sessions: float activations or integer token ids.
///
/// A shape plus flat row-major data; a session casts to the exact type its model file declares (int32 ids,
/// float16 activations). Golden files store tensors as raw little-endian `.f32` / `.i32` files, read with
/// `FloatTensor.readF32` / `IntTensor.readI32`.
public enum Tensor: Sendable, Equatable {
    case float(FloatTensor)
    case int(IntTensor)

    public var shape: [Int] {
        switch self {
        case .float(let tensor): return tensor.shape
        case .int(let tensor): return tensor.shape
        }
    }

    /// Elements of `shape`; refuses negative dimensions and overflow (a hostile file could ask for 2^40).
    public static func elementCount(_ shape: [Int], name: String = "tensor") throws -> Int {
        var total = 1
        for dim in shape {
            guard dim >= 0 else {
                throw BundleError.invalidTensor(name: name, detail: "negative dimension in \(shapeString(shape))")
            }
            let (product, overflow) = total.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= Int(Int32.max) else {
                throw BundleError.invalidTensor(name: name, detail: "shape \(shapeString(shape)) is too large")
            }
            total = product
        }
        return total
    }

    public static func shapeString(_ shape: [Int]) -> String {
        "[" + shape.map(String.init).joined(separator: ", ") + "]"
    }

    /// The raw bytes of a little-endian tensor file holding exactly `count` 4-byte elements.
    static func readRaw(_ url: URL, count: Int, name: String) throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: url.path) else { throw BundleError.missingFile(path: url.path) }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw BundleError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        guard data.count == count * 4 else {
            throw BundleError.sizeMismatch(file: url.path, expected: count * 4, actual: data.count)
        }
        return [UInt8](data)
    }

    static func word(_ bytes: [UInt8], at offset: Int) -> UInt32 {
        let b0 = UInt32(bytes[offset])
        let b1 = UInt32(bytes[offset + 1]) << 8
        let b2 = UInt32(bytes[offset + 2]) << 16
        let b3 = UInt32(bytes[offset + 3]) << 24
        return b0 | b1 | b2 | b3
    }

    static func append(_ word: UInt32, to out: inout Data) {
        out.append(contentsOf: [UInt8(truncatingIfNeeded: word), UInt8(truncatingIfNeeded: word >> 8),
                                UInt8(truncatingIfNeeded: word >> 16), UInt8(truncatingIfNeeded: word >> 24)])
    }
}

/// A float32 tensor. Plain arrays on purpose: the pipeline's arithmetic is elementwise and must round exactly as
/// numpy's float32 does; sessions convert to their runtime's buffers at the edge.
public struct FloatTensor: Sendable, Equatable {
    public let shape: [Int]
    public var data: [Float]

    /// Throws `invalidTensor` when `data` does not hold exactly the elements `shape` describes.
    public init(shape: [Int], data: [Float], name: String = "tensor") throws {
        let count = try Tensor.elementCount(shape, name: name)
        guard data.count == count else {
            throw BundleError.invalidTensor(name: name, detail: "\(data.count) values for shape \(Tensor.shapeString(shape))")
        }
        self.shape = shape
        self.data = data
    }

    public init(shape: [Int], repeating value: Float) throws {
        self.shape = shape
        self.data = [Float](repeating: value, count: try Tensor.elementCount(shape))
    }

    public var count: Int { data.count }

    public func shapeString() -> String { Tensor.shapeString(shape) }

    /// Rows [from, to) of the first axis (splitting a batched UNet output into its CFG halves).
    public func slice0(from: Int, to: Int) throws -> FloatTensor {
        guard let rows = shape.first, rows > 0, from >= 0, from < to, to <= rows else {
            throw BundleError.invalidTensor(name: "slice", detail: "rows \(from)..<\(to) of shape \(shapeString())")
        }
        let per = data.count / rows
        var newShape = shape
        newShape[0] = to - from
        return try FloatTensor(shape: newShape, data: Array(data[(from * per)..<(to * per)]))
    }

    /// Stacks tensors of equal trailing shape along axis 0 (the CFG batch: uncond first, then cond).
    public static func concat0(_ parts: [FloatTensor]) throws -> FloatTensor {
        guard let first = parts.first, let firstRows = first.shape.first, firstRows > 0 else {
            throw BundleError.invalidTensor(name: "concat0", detail: "nothing to stack")
        }
        var rows = 0
        var data: [Float] = []
        data.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for part in parts {
            guard let partRows = part.shape.first, part.shape.dropFirst() == first.shape.dropFirst() else {
                throw BundleError.invalidTensor(name: "concat0", detail: "shapes \(first.shapeString()) and \(part.shapeString()) differ")
            }
            rows += partRows
            data += part.data
        }
        var shape = first.shape
        shape[0] = rows
        return try FloatTensor(shape: shape, data: data)
    }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) throws -> FloatTensor {
        try FloatTensor(shape: newShape, data: data)
    }

    /// A raw little-endian float32 file (the `.f32` files of golden folders).
    public static func readF32(_ url: URL, shape: [Int], name: String? = nil) throws -> FloatTensor {
        let label = name ?? url.lastPathComponent
        let count = try Tensor.elementCount(shape, name: label)
        let bytes = try Tensor.readRaw(url, count: count, name: label)
        var data = [Float](repeating: 0, count: count)
        for i in 0..<count {
            data[i] = Float(bitPattern: Tensor.word(bytes, at: i * 4))
        }
        return try FloatTensor(shape: shape, data: data, name: label)
    }

    public func toLittleEndianBytes() -> Data {
        var out = Data(capacity: data.count * 4)
        for value in data { Tensor.append(value.bitPattern, to: &out) }
        return out
    }
}

/// An int32 tensor (token ids).
public struct IntTensor: Sendable, Equatable {
    public let shape: [Int]
    public var data: [Int32]

    public init(shape: [Int], data: [Int32], name: String = "tensor") throws {
        let count = try Tensor.elementCount(shape, name: name)
        guard data.count == count else {
            throw BundleError.invalidTensor(name: name, detail: "\(data.count) values for shape \(Tensor.shapeString(shape))")
        }
        self.shape = shape
        self.data = data
    }

    public var count: Int { data.count }

    public func shapeString() -> String { Tensor.shapeString(shape) }

    /// A raw little-endian int32 file (the `.i32` files of golden folders).
    public static func readI32(_ url: URL, shape: [Int], name: String? = nil) throws -> IntTensor {
        let label = name ?? url.lastPathComponent
        let count = try Tensor.elementCount(shape, name: label)
        let bytes = try Tensor.readRaw(url, count: count, name: label)
        var data = [Int32](repeating: 0, count: count)
        for i in 0..<count {
            data[i] = Int32(bitPattern: Tensor.word(bytes, at: i * 4))
        }
        return try IntTensor(shape: shape, data: data, name: label)
    }

    public func toLittleEndianBytes() -> Data {
        var out = Data(capacity: data.count * 4)
        for value in data { Tensor.append(UInt32(bitPattern: value), to: &out) }
        return out
    }
}
