import Foundation

extension ClipTokenizer {
    /// The special tokens of a CLIP tokenizer and whether each is matched before or after normalisation.
    ///
    /// As in edgediff/runtime/tokenizer.py `SpecialTokens`: a token given as an AddedToken object keeps its
    /// "normalized" flag, a plain string is matched verbatim; when two roles share one string (SD 1.x pads with
    /// <|endoftext|>) the later role's flag wins, in the order bos, eos, unk, pad.
    public struct SpecialTokens: Sendable, Equatable {
        public var bos = "<|startoftext|>"
        public var eos = "<|endoftext|>"
        public var pad = "<|endoftext|>"
        public var unk = "<|endoftext|>"
        /// Each special string -> matched after normalisation (lower-casing) or not.
        public var normalized: [String: Bool] = [:]

        public init() {}

        static let roles = ["bos", "eos", "unk", "pad"]

        /// Each distinct special string -> its `normalized` flag.
        public func addedTokens() -> [String: Bool] {
            var tokens: [String: Bool] = [:]
            for role in SpecialTokens.roles {
                let text = self.text(role)
                tokens[text] = normalized[text] ?? false
            }
            return tokens
        }

        func text(_ role: String) -> String {
            switch role {
            case "bos": return bos
            case "eos": return eos
            case "unk": return unk
            default: return pad
            }
        }

        /// tokenizer_config.json, then special_tokens_map.json (which wins, as in transformers), then `overrides`
        /// (the manifest's tokenizer section).
        public static func read(folder: URL?, overrides: [String: String] = [:]) throws -> SpecialTokens {
            var sources: [[String: JSONValue]] = []
            for name in ["tokenizer_config.json", "special_tokens_map.json"] {
                guard let url = folder?.appendingPathComponent(name), FileManager.default.fileExists(atPath: url.path) else { continue }
                guard let members = try JSONValue.read(url).objectValue else {
                    throw BundleError.invalidManifest(key: "tokenizer/\(name): (document)", expected: "a JSON object")
                }
                sources.append(members)
            }
            sources.append(overrides.mapValues { JSONValue.string($0) })
            var found: [String: (text: String, normalized: Bool)] = [:]
            for data in sources {
                for role in roles {
                    guard let value = data["\(role)_token"] else { continue }
                    if let text = value.stringValue {
                        found[role] = (text, false)
                    } else if let content = value["content"]?.stringValue {
                        found[role] = (content, value["normalized"]?.boolValue ?? false)
                    }
                }
            }
            var special = SpecialTokens()
            special.bos = found["bos"]?.text ?? special.bos
            special.eos = found["eos"]?.text ?? special.eos
            special.unk = found["unk"]?.text ?? special.unk
            special.pad = found["pad"]?.text ?? special.pad
            for role in roles {
                special.normalized[special.text(role)] = found[role]?.normalized ?? false
            }
            return special
        }
    }
}

/// Prompt -> fixed-length token ids, exactly as edgediff/runtime/tokenizer.py `CLIPTokenizer` (HF tokenizers):
/// special tokens split out (verbatim ones first, then the normalised ones), NFC, whitespace runs -> one space,
/// lower-case, CLIP's word split, byte-level BPE with a `</w>` end-of-word suffix; then
/// `<|startoftext|> ids <|endoftext|>`, truncated to `maxLength` and padded with the pad token.
public struct ClipTokenizer: Sendable {
    public let maxLength: Int
    public let special: SpecialTokens
    public let bosId: Int32
    public let eosId: Int32
    public let padId: Int32
    let vocab: [String: Int32]
    let ranks: [MergePair: Int]
    let unkId: Int32

    struct MergePair: Hashable, Sendable {
        let first: String
        let second: String
    }

    public init(vocab vocabURL: URL, merges mergesURL: URL, maxLength: Int = 77, special: SpecialTokens? = nil) throws {
        guard maxLength >= 2 else { throw BundleError.invalidManifest(key: "tokenizer.max_length", expected: "an integer of at least 2") }
        for url in [vocabURL, mergesURL] where !FileManager.default.fileExists(atPath: url.path) {
            throw BundleError.missingFile(path: url.path)
        }
        let vocabJSON = try JSONValue.read(vocabURL)
        guard let entries = vocabJSON.objectValue else {
            throw BundleError.invalidManifest(key: vocabURL.lastPathComponent, expected: "an object of token -> id")
        }
        var vocab: [String: Int32] = [:]
        vocab.reserveCapacity(entries.count)
        for (token, entry) in entries {
            guard let value = entry.intValue, let id32 = Int32(exactly: value) else {
                throw BundleError.invalidManifest(key: "\(vocabURL.lastPathComponent): \(token)", expected: "an integer id")
            }
            vocab[token] = id32
        }
        let mergesText: String
        do {
            mergesText = try String(contentsOf: mergesURL, encoding: .utf8)
        } catch {
            throw BundleError.unreadableFile(path: mergesURL.path, reason: error.localizedDescription)
        }
        var ranks: [MergePair: Int] = [:]
        var rank = 0
        for (lineNumber, line) in mergesText.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline }).enumerated() {
            if line.hasPrefix("#version") { continue }
            let parts = line.split(whereSeparator: { $0.isWhitespace })
            guard parts.count == 2 else { continue }
            let pair = MergePair(first: String(parts[0]), second: String(parts[1]))
            for token in [pair.first, pair.second, pair.first + pair.second] where vocab[token] == nil {
                throw BundleError.invalidManifest(key: "\(mergesURL.lastPathComponent) line \(lineNumber + 1)",
                                                  expected: "tokens that are in vocab.json ('\(token)' is not)")
            }
            ranks[pair] = rank  // a repeated pair keeps the later rank, as tokenizers' merge map does
            rank += 1
        }
        let special = try special ?? SpecialTokens.read(folder: vocabURL.deletingLastPathComponent())
        func specialId(_ token: String) throws -> Int32 {
            guard let value = vocab[token] else {
                throw BundleError.invalidManifest(key: "tokenizer special token '\(token)'", expected: "a token of vocab.json")
            }
            return value
        }
        self.maxLength = maxLength
        self.special = special
        self.vocab = vocab
        self.ranks = ranks
        self.bosId = try specialId(special.bos)
        self.eosId = try specialId(special.eos)
        self.padId = try specialId(special.pad)
        self.unkId = try specialId(special.unk)
    }

    /// The tokenizer a bundle's manifest describes, with the manifest's overrides of the special tokens.
    public static func fromManifest(_ manifest: BundleManifest) throws -> ClipTokenizer {
        let spec = manifest.tokenizer
        let special = try SpecialTokens.read(folder: spec.vocab.deletingLastPathComponent(), overrides: spec.overrides)
        return try ClipTokenizer(vocab: spec.vocab, merges: spec.merges, maxLength: spec.maxLength, special: special)
    }

    /// `maxLength` ids: BOS, the prompt's ids (truncated), EOS, then padding.
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = [bosId]
        ids += tokens(text).prefix(maxLength - 2)
        ids.append(eosId)
        ids += [Int32](repeating: padId, count: maxLength - ids.count)
        return ids
    }

    /// BPE ids of `text` without BOS/EOS, truncation or padding (special tokens typed in the text still match).
    public func tokens(_ text: String) -> [Int32] {
        let added = special.addedTokens()
        let verbatim = added.filter { !$0.value }.map { Array($0.key.unicodeScalars) }
        let afterNormalising = added.filter { $0.value }.map { Array($0.key.unicodeScalars) }
        var ids: [Int32] = []
        for (piece, isToken) in ClipTokenizer.split(Array(text.unicodeScalars), on: verbatim) {
            if isToken {
                ids.append(vocab[String(String.UnicodeScalarView(piece))] ?? unkId)
                continue
            }
            let normalised = ClipTokenizer.normalize(String(String.UnicodeScalarView(piece)))
            for (part, isNormalisedToken) in ClipTokenizer.split(Array(normalised.unicodeScalars), on: afterNormalising) {
                if isNormalisedToken {
                    ids.append(vocab[String(String.UnicodeScalarView(part))] ?? unkId)
                    continue
                }
                for word in ClipTokenizer.words(part) {
                    ids += bpe(word)
                }
            }
        }
        return ids
    }

    // MARK: - the steps

    /// NFC, every whitespace run -> one space, then each scalar's full lower-case mapping (no final-sigma rule,
    /// as HF tokenizers' Lowercase).
    static func normalize(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var previousWasSpace = false
        for scalar in text.precomposedStringWithCanonicalMapping.unicodeScalars {
            if scalar.properties.isWhitespace {
                if !previousWasSpace { out.append(" ") }
                previousWasSpace = true
            } else {
                out.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
                previousWasSpace = false
            }
        }
        return String(out)
    }

    /// Splits `text` around the leftmost-longest occurrences of `tokens`; each piece says whether it is a token.
    static func split(_ text: [Unicode.Scalar], on tokens: [[Unicode.Scalar]]) -> [([Unicode.Scalar], Bool)] {
        var pieces: [([Unicode.Scalar], Bool)] = []
        var start = 0
        var index = 0
        while index < text.count {
            var best: [Unicode.Scalar]? = nil
            for token in tokens where !token.isEmpty && hasPrefix(text, token, at: index) {
                if token.count > (best?.count ?? 0) { best = token }
            }
            if let best {
                if start < index { pieces.append((Array(text[start..<index]), false)) }
                pieces.append((best, true))
                index += best.count
                start = index
            } else {
                index += 1
            }
        }
        if start < text.count { pieces.append((Array(text[start...]), false)) }
        return pieces
    }

    static let contractions: [[Unicode.Scalar]] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }
    static let specialLiterals: [[Unicode.Scalar]] = ["<|startoftext|>", "<|endoftext|>"].map { Array($0.unicodeScalars) }

    /// CLIP's pattern `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
    /// keeping the matches. A special literal comes out as "<|", its name and "|>", because the byte-level
    /// pre-tokenizer that follows splits it again with GPT-2's pattern (which leaves every other match whole).
    static func words(_ text: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var words: [[Unicode.Scalar]] = []
        var index = 0
        while index < text.count {
            if let literal = specialLiterals.first(where: { hasPrefix(text, $0, at: index) }) {
                words.append(Array(literal[0..<2]))
                words.append(Array(literal[2..<(literal.count - 2)]))
                words.append(Array(literal[(literal.count - 2)...]))
                index += literal.count
                continue
            }
            if let contraction = contractions.first(where: { hasPrefix(text, $0, at: index) }) {
                words.append(contraction)
                index += contraction.count
                continue
            }
            let scalar = text[index]
            var end = index + 1
            if isLetter(scalar) {
                while end < text.count, isLetter(text[end]) { end += 1 }
            } else if isNumber(scalar) {
                // one digit per word
            } else if !scalar.properties.isWhitespace {
                while end < text.count, !text[end].properties.isWhitespace, !isLetter(text[end]), !isNumber(text[end]) { end += 1 }
            } else {
                index += 1  // whitespace separates words and is dropped
                continue
            }
            words.append(Array(text[index..<end]))
            index = end
        }
        return words
    }

    /// Byte-level BPE of one word: its UTF-8 bytes as GPT-2's printable characters, `</w>` on the last one, then
    /// the lowest-ranked adjacent pair merged everywhere, until no pair has a rank.
    func bpe(_ word: [Unicode.Scalar]) -> [Int32] {
        let bytes = Array(String(String.UnicodeScalarView(word)).utf8)
        guard !bytes.isEmpty else { return [] }
        var symbols = bytes.map { ClipTokenizer.byteToUnicode[Int($0)] }
        symbols[symbols.count - 1] += "</w>"
        while symbols.count > 1 {
            var bestRank = Int.max
            var bestPair: MergePair? = nil
            for k in 0..<(symbols.count - 1) {
                let pair = MergePair(first: symbols[k], second: symbols[k + 1])
                if let rank = ranks[pair], rank < bestRank {
                    bestRank = rank
                    bestPair = pair
                }
            }
            guard let pair = bestPair else { break }
            var merged: [String] = []
            var k = 0
            while k < symbols.count {
                if k + 1 < symbols.count, symbols[k] == pair.first, symbols[k + 1] == pair.second {
                    merged.append(pair.first + pair.second)
                    k += 2
                } else {
                    merged.append(symbols[k])
                    k += 1
                }
            }
            symbols = merged
        }
        return symbols.map { vocab[$0] ?? unkId }
    }

    /// GPT-2's byte -> printable character table: printable Latin-1 bytes map to themselves, the rest to U+0100...
    static let byteToUnicode: [String] = {
        var printable: [Int] = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var codes = printable
        var extra = 0
        for byte in 0..<256 where !printable.contains(byte) {
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
        }
        var table = [String](repeating: "", count: 256)
        for (byte, code) in zip(printable, codes) {
            table[byte] = String(Character(Unicode.Scalar(UInt32(code)) ?? "?"))
        }
        return table
    }()

    static func hasPrefix(_ text: [Unicode.Scalar], _ prefix: [Unicode.Scalar], at index: Int) -> Bool {
        guard index + prefix.count <= text.count else { return false }
        for offset in 0..<prefix.count where text[index + offset] != prefix[offset] { return false }
        return true
    }

    static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    static func isNumber(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }
}
