import XCTest
@testable import EdgediffKit

/// Token ids against the Python runtime's (the `tokenizers` library) as the golden files record them.
final class TokenizerTests: XCTestCase {
    func testPromptAndNegativePromptIdsMatchTheGoldenFiles() throws {
        for model in TestEnv.goldenModels {
            let golden = try TestEnv.goldenFiles(model)
            let tokenizer = try TestEnv.tokenizer(model)
            XCTAssertEqual(tokenizer.encode(golden.prompt), golden.inputIds, "\(model) input_ids of '\(golden.prompt)'")
            if let negative = golden.negativeInputIds {
                XCTAssertEqual(tokenizer.encode(golden.negativePrompt), negative, "\(model) negative_input_ids")
            }
        }
    }

    func testEveryTokenizerEdgeCaseMatches() throws {
        for model in TestEnv.goldenModels {
            let golden = try TestEnv.goldenFiles(model)
            let tokenizer = try TestEnv.tokenizer(model)
            XCTAssertGreaterThanOrEqual(golden.tokenizerCases.count, 7, "golden.json lists only \(golden.tokenizerCases.count) cases")
            for (text, ids) in golden.tokenizerCases {
                XCTAssertEqual(tokenizer.encode(text), ids, "\(model) ids of \(text.prefix(60))")
            }
        }
    }

    func testTruncationKeepsStartAndEndTokensAndPadsWithThePadToken() throws {
        let tokenizer = try TestEnv.tokenizer("shapes-sd")
        let long = tokenizer.encode(String(repeating: "word ", count: 200))
        XCTAssertEqual(long.count, 77)
        XCTAssertEqual(long.first, tokenizer.bosId)
        XCTAssertEqual(long.last, tokenizer.eosId)
        let empty = tokenizer.encode("")
        XCTAssertEqual(Array(empty.prefix(2)), [tokenizer.bosId, tokenizer.eosId])
        XCTAssertTrue(empty.dropFirst(2).allSatisfy { $0 == tokenizer.padId })
    }

    func testSpecialTokenFlagsFollowTheConfigFiles() throws {
        // SD pads with the plain string <|endoftext|>, so it is matched verbatim; <|startoftext|> is an AddedToken
        // with normalized=true, so a capitalised one still matches after lower-casing.
        let special = try ClipTokenizer.SpecialTokens.read(folder: TestEnv.tokenizerFolder("shapes-sd"))
        XCTAssertEqual(special.addedTokens(), ["<|startoftext|>": true, "<|endoftext|>": false])
        let tokenizer = try TestEnv.tokenizer("shapes-sd")
        XCTAssertEqual(tokenizer.tokens("<|STARTOFTEXT|>").first, tokenizer.bosId)
        XCTAssertNotEqual(tokenizer.tokens("<|ENDOFTEXT|>").first, tokenizer.eosId)
        XCTAssertEqual(tokenizer.tokens("x<|endoftext|>y").count, 3)
    }

    func testAManifestOverrideOfThePadTokenIsUsed() throws {
        let folder = TestEnv.tokenizerFolder("shapes-sd")
        let special = try ClipTokenizer.SpecialTokens.read(folder: folder, overrides: ["pad_token": "!"])
        let tokenizer = try ClipTokenizer(vocab: folder.appendingPathComponent("vocab.json"),
                                          merges: folder.appendingPathComponent("merges.txt"), special: special)
        XCTAssertEqual(tokenizer.padId, 0)  // SD 2.x pads with "!" = id 0
        XCTAssertEqual(tokenizer.encode("").last, 0)
    }

    func testSpecialTokensTypedInAnyCaseMatchAsThePythonRuntimesUnderEverySetup() throws {
        // apps/golden/tokenizer/variants.json (make_tokenizer_variants.py), shared with the Kotlin tests
        let document = try JSONValue.read(TestEnv.golden.appendingPathComponent("tokenizer/variants.json"))
        let folder = TestEnv.tokenizerFolder("shapes-sd")
        let variants = document["variants"]?.arrayValue ?? []
        XCTAssertEqual(variants.count, 3)
        for variant in variants {
            var special = ClipTokenizer.SpecialTokens()
            special.bos = variant["special"]?["bos"]?.stringValue ?? special.bos
            special.eos = variant["special"]?["eos"]?.stringValue ?? special.eos
            special.unk = variant["special"]?["unk"]?.stringValue ?? special.unk
            special.pad = variant["special"]?["pad"]?.stringValue ?? special.pad
            for (text, flag) in variant["special"]?["normalized"]?.objectValue ?? [:] {
                special.normalized[text] = flag.boolValue ?? false
            }
            let tokenizer = try ClipTokenizer(vocab: folder.appendingPathComponent("vocab.json"),
                                              merges: folder.appendingPathComponent("merges.txt"), maxLength: 77, special: special)
            for entry in variant["cases"]?.arrayValue ?? [] {
                let text = entry["text"]?.stringValue ?? ""
                let ids = (entry["ids"]?.arrayValue ?? []).compactMap { item in item.intValue.map { Int32(truncatingIfNeeded: $0) } }
                XCTAssertEqual(tokenizer.encode(text), ids, "\(variant["name"]?.stringValue ?? ""): \(text.prefix(50))")
            }
        }
    }
}
