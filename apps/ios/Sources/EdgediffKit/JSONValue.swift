import Foundation

/// A parsed JSON document, small enough to walk by hand with typed errors.
///
/// Why not JSONSerialization: bundles in format edgediff-bundle/1 may hold `NaN`, `Infinity` and `-Infinity`
/// (Python's json writes them), JSONSerialization rejects those on older systems, and its NSNumber cannot tell
/// `true` from `1` on Apple platforms. This parser accepts exactly what Python's `json.loads` accepts (no
/// byte-order mark, at most 256 levels of nesting), as the Kotlin twin's `StrictJson` does.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var doubleValue: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    /// The number as an Int when it is integral and in range (JSON has one number type).
    public var intValue: Int? {
        guard case .number(let value) = self, value.isFinite, value.rounded() == value,
              value >= -9.007_199_254_740_992e15, value <= 9.007_199_254_740_992e15 else { return nil }
        return Int(value)
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    // MARK: - Reading

    /// Parses `data` (UTF-8). `file` names the source in error messages.
    public static func parse(_ data: Data, file: String) throws -> JSONValue {
        try parseReportingNonFinite(data, file: file).value
    }

    /// Parses `data` and says whether it held NaN or Infinity literals (allowed in edgediff-bundle/1, not in /2).
    /// `key: null` beside a string `key_reason` comes back as the non-finite number it stands for (see
    /// `restoringNonFinite`), so no typed read takes it for an absent key.
    public static func parseReportingNonFinite(_ data: Data, file: String) throws -> (value: JSONValue, hadNonFinite: Bool) {
        var parser = Parser(bytes: [UInt8](data), file: file)
        let value = try parser.document()
        return (value.restoringNonFinite(), parser.sawNonFinite)
    }

    /// edgediff/contract.py `restore_nonfinite`, as the Kotlin twin (Json.kt): in strict JSON a non-finite figure is
    /// `key: null` with `key_reason` beside it; that pair becomes the number again ("not a number ..." NaN,
    /// "-infinity ..." -infinity, anything else +infinity) and the `_reason` key goes.
    public func restoringNonFinite() -> JSONValue {
        switch self {
        case .object(let members):
            var out = members
            for (key, item) in members where item.isNull {
                guard let reason = members[key + "_reason"]?.stringValue else { continue }
                out[key] = .number(JSONValue.nonFinite(reason))
                out[key + "_reason"] = nil
            }
            for (key, item) in out {
                out[key] = item.restoringNonFinite()
            }
            return .object(out)
        case .array(let items):
            return .array(items.map { $0.restoringNonFinite() })
        default:
            return self
        }
    }

    static func nonFinite(_ reason: String) -> Double {
        if reason.hasPrefix("not a number") { return .nan }
        return reason.hasPrefix("-infinity") ? -.infinity : .infinity
    }

    /// Reads and parses a file.
    public static func read(_ url: URL) throws -> JSONValue {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw BundleError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        return try parse(data, file: url.lastPathComponent)
    }

    // MARK: - Writing

    /// Compact or indented JSON text with sorted keys; non-finite numbers are written as null (strict JSON).
    public func serialized(indent: Int = 2) -> String {
        var out = ""
        write(into: &out, indent: indent, level: 0)
        return out
    }

    private func write(into out: inout String, indent: Int, level: Int) {
        let newline = indent > 0 ? "\n" : ""
        let pad = String(repeating: " ", count: indent * (level + 1))
        let closePad = String(repeating: " ", count: indent * level)
        switch self {
        case .null:
            out += "null"
        case .bool(let value):
            out += value ? "true" : "false"
        case .number(let value):
            out += JSONValue.format(value)
        case .string(let value):
            out += JSONValue.quote(value)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "[" + newline
            for (index, item) in items.enumerated() {
                out += pad
                item.write(into: &out, indent: indent, level: level + 1)
                out += (index + 1 < items.count ? "," : "") + newline
            }
            out += closePad + "]"
        case .object(let members):
            if members.isEmpty { out += "{}"; return }
            out += "{" + newline
            let keys = members.keys.sorted()
            for (index, key) in keys.enumerated() {
                out += pad + JSONValue.quote(key) + (indent > 0 ? ": " : ":")
                members[key, default: .null].write(into: &out, indent: indent, level: level + 1)
                out += (index + 1 < keys.count ? "," : "") + newline
            }
            out += closePad + "}"
        }
    }

    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value.rounded() == value, abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"  // Swift prints the shortest representation that reads back exactly
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// A recursive-descent parser over UTF-8 bytes with a depth limit, so hostile input cannot exhaust the stack.
private struct Parser {
    let bytes: [UInt8]
    let file: String
    var index = 0
    var depth = 0
    var sawNonFinite = false
    static let maxDepth = 256

    init(bytes: [UInt8], file: String) {
        self.bytes = bytes
        self.file = file
    }

    mutating func document() throws -> JSONValue {
        // Python's json refuses a byte-order mark, and so does the Kotlin twin.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { throw failure("a byte-order mark at the start (JSON files are plain UTF-8)") }
        let value = try parseValue()
        skipWhitespace()
        guard index == bytes.count else { throw failure("unexpected text after the document") }
        return value
    }

    func failure(_ detail: String) -> BundleError {
        var line = 1
        var column = 1
        for byte in bytes[..<min(index, bytes.count)] {
            if byte == 0x0A { line += 1; column = 1 } else { column += 1 }
        }
        return .invalidJson(file: file, detail: "\(detail) at line \(line), column \(column)")
    }

    mutating func skipWhitespace() {
        while index < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[index]) { index += 1 }
    }

    mutating func consume(_ literal: String) -> Bool {
        let utf8 = Array(literal.utf8)
        guard index + utf8.count <= bytes.count, Array(bytes[index..<index + utf8.count]) == utf8 else { return false }
        index += utf8.count
        return true
    }

    mutating func parseValue() throws -> JSONValue {
        skipWhitespace()
        guard index < bytes.count else { throw failure("unexpected end of data") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): if consume("true") { return .bool(true) }
        case UInt8(ascii: "f"): if consume("false") { return .bool(false) }
        case UInt8(ascii: "n"): if consume("null") { return .null }
        case UInt8(ascii: "N"):
            if consume("NaN") {
                sawNonFinite = true
                return .number(.nan)
            }
        case UInt8(ascii: "I"):
            if consume("Infinity") {
                sawNonFinite = true
                return .number(.infinity)
            }
        default:
            if consume("-Infinity") {
                sawNonFinite = true
                return .number(-.infinity)
            }
            return try parseNumber()
        }
        throw failure("unexpected character")
    }

    mutating func nested<T>(_ body: (inout Parser) throws -> T) throws -> T {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Parser.maxDepth else { throw failure("nesting deeper than \(Parser.maxDepth) levels") }
        return try body(&self)
    }

    mutating func parseObject() throws -> JSONValue {
        try nested { parser in
            parser.index += 1
            var members: [String: JSONValue] = [:]
            parser.skipWhitespace()
            if parser.consume("}") { return .object(members) }
            while true {
                parser.skipWhitespace()
                guard parser.index < parser.bytes.count, parser.bytes[parser.index] == UInt8(ascii: "\"") else {
                    throw parser.failure("expected a quoted key")
                }
                let key = try parser.parseString()
                parser.skipWhitespace()
                guard parser.consume(":") else { throw parser.failure("expected ':' after a key") }
                members[key] = try parser.parseValue()  // a repeated key keeps the last value, as Python does
                parser.skipWhitespace()
                if parser.consume(",") { continue }
                if parser.consume("}") { return .object(members) }
                throw parser.failure("expected ',' or '}'")
            }
        }
    }

    mutating func parseArray() throws -> JSONValue {
        try nested { parser in
            parser.index += 1
            var items: [JSONValue] = []
            parser.skipWhitespace()
            if parser.consume("]") { return .array(items) }
            while true {
                items.append(try parser.parseValue())
                parser.skipWhitespace()
                if parser.consume(",") { continue }
                if parser.consume("]") { return .array(items) }
                throw parser.failure("expected ',' or ']'")
            }
        }
    }

    mutating func parseNumber() throws -> JSONValue {
        let start = index
        func digits(_ parser: inout Parser) -> Int {
            let begin = parser.index
            while parser.index < parser.bytes.count, (0x30...0x39).contains(parser.bytes[parser.index]) { parser.index += 1 }
            return parser.index - begin
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count, (0x30...0x39).contains(bytes[index]) else { throw failure("unexpected character") }
        if bytes[index] == UInt8(ascii: "0") { index += 1 } else { _ = digits(&self) }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits(&self) > 0 else { throw failure("expected digits after '.'") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits(&self) > 0 else { throw failure("expected digits in the exponent") }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard let value = Double(text) else { throw failure("bad number \(text)") }
        return .number(value)
    }

    mutating func parseString() throws -> String {
        index += 1  // the opening quote
        var scalars = String.UnicodeScalarView()
        var run = [UInt8]()  // raw UTF-8 between escapes
        func flush(_ run: inout [UInt8], into scalars: inout String.UnicodeScalarView) {
            if !run.isEmpty {
                scalars.append(contentsOf: String(decoding: run, as: UTF8.self).unicodeScalars)
                run.removeAll(keepingCapacity: true)
            }
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                flush(&run, into: &scalars)
                return String(scalars)
            }
            if byte < 0x20 { throw failure("control character in a string") }
            if byte != UInt8(ascii: "\\") {
                run.append(byte)
                index += 1
                continue
            }
            flush(&run, into: &scalars)
            index += 1
            guard index < bytes.count else { break }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), consume("\\u") {
                    let low = try hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        scalars.append("\u{FFFD}")  // a lone high surrogate, then an unrelated escape
                        code = low
                    }
                }
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default:
                throw failure("unknown escape \\\(Character(Unicode.Scalar(escape)))")
            }
        }
        throw failure("unterminated string")
    }

    mutating func hex4() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw failure("short \\u escape") }
        var value: UInt32 = 0
        for byte in bytes[index..<index + 4] {
            let digit: UInt32
            switch byte {
            case 0x30...0x39: digit = UInt32(byte - 0x30)
            case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
            case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
            default: throw failure("bad \\u escape")
            }
            value = value * 16 + digit
        }
        index += 4
        return value
    }
}
