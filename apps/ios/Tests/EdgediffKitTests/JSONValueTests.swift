import XCTest
@testable import EdgediffKit

/// The JSON reader accepts what Python's json.loads accepts and refuses the rest with a position, never a crash.
final class JSONValueTests: XCTestCase {
    func testPythonsJSONIsRead() throws {
        let text = #"{"a": [1, -2.5e-3, true, false, null], "b": "tab\tquote\" \u00e9 \ud83d\udc31", "c": -Infinity, "d": NaN, "a": 7}"#
        let value = try JSONValue.parse(Data(text.utf8), file: "t.json")
        XCTAssertEqual(value["a"]?.intValue, 7)  // a repeated key keeps the last value
        XCTAssertEqual(value["b"]?.stringValue, "tab\tquote\" é 🐱")
        XCTAssertEqual(value["c"]?.doubleValue, -.infinity)
        XCTAssertTrue(value["d"]?.doubleValue?.isNaN ?? false)
        let (_, hadNonFinite) = try JSONValue.parseReportingNonFinite(Data(text.utf8), file: "t.json")
        XCTAssertTrue(hadNonFinite)
        XCTAssertEqual(try JSONValue.parse(Data("[1, 2.0, 3e2]".utf8), file: "t").arrayValue?.compactMap(\.intValue), [1, 2, 300])
        XCTAssertNil(JSONValue.number(1.5).intValue)
        XCTAssertNil(JSONValue.bool(true).intValue)  // true is not 1
    }

    func testBrokenJSONIsANamedErrorWithAPosition() {
        for text in ["", "{", "{\"a\" 1}", "[1,]", "\"\\x\"", "01", "{\"a\": tru}", "[1] 2", String(repeating: "[", count: 10_000), "{'a': 1}",
                     "// c\n{}", "\u{FEFF}{}"] {
            let error = assertRefused("invalid_json") { _ = try JSONValue.parse(Data(text.utf8), file: "t.json") }
            if case .invalidJson(_, let detail)? = error { XCTAssertTrue(detail.contains("line"), detail) }
        }
    }

    func testWritingRoundTripsAndIsStrict() throws {
        let value = JSONValue.object(["x": .array([.number(1), .number(0.1), .string("a\"b\n\u{1}")]), "y": .number(.nan)])
        let text = value.serialized()
        XCTAssertFalse(text.contains("NaN"))
        let back = try JSONValue.parse(Data(text.utf8), file: "t")
        XCTAssertEqual(back["x"], value["x"])
        XCTAssertEqual(back["y"], .null)
    }

    func testNullBesideItsReasonIsTheNonFiniteNumberItStandsFor() throws {
        let text = #"{"x": null, "x_reason": "-infinity, not representable in JSON", "y": null, "z": [null]}"#
        let (value, hadNonFinite) = try JSONValue.parseReportingNonFinite(Data(text.utf8), file: "t.json")
        XCTAssertEqual(value["x"]?.doubleValue, -.infinity)
        XCTAssertEqual(value.objectValue?.keys.sorted(), ["x", "y", "z"])
        XCTAssertFalse(hadNonFinite)
        XCTAssertEqual(value["y"], .null)  // a null without a reason is an absent key
        XCTAssertEqual(value["z"], .array([.null]))
    }
}
