import XCTest
@testable import EdgediffKit

/// A bundle with several image sizes (pipeline.sizes): the core reads them, lets the caller pick one (the first by
/// default), refuses one the bundle lacks naming those it has, and feeds the latent of the picked size
/// (apps/android/core SizesTest.kt has the same cases; its JVM run also drives ONNX Runtime and LiteRT at every size).
final class SizesTests: XCTestCase {
    static let sizedModel = "shapes-sd-step4-sizes"
    let three = [ImageSize(height: 64, width: 64), ImageSize(height: 64, width: 96), ImageSize(height: 96, width: 64)]

    func sizesValue(_ sizes: [ImageSize]) -> JSONValue {
        .array(sizes.map { JSONValue.array([.number(Double($0.height)), .number(Double($0.width))]) })
    }

    func testABundleListsItsSizesTheFirstByDefaultAndRefusesOneItLacksNamingTheOthers() throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        XCTAssertEqual(try bundle.load().pipeline.sizes, [ImageSize(height: 64, width: 64)])  // no pipeline.sizes: one size
        try bundle.set(["pipeline", "sizes"], sizesValue(three))
        let manifest = try bundle.load()
        XCTAssertEqual(manifest.pipeline.sizes, three)
        var pipeline = try TextToImage(manifest: manifest, sessions: ResidentSessions(factory: ShapeSessions()))
        XCTAssertEqual(pipeline.size, ImageSize(height: 64, width: 64))
        XCTAssertEqual(pipeline.latentShape, [1, 4, 8, 8])
        XCTAssertEqual(try pipeline.useSize(height: 96, width: 64), ImageSize(height: 96, width: 64))
        XCTAssertEqual(pipeline.latentShape, [1, 4, 12, 8])
        let error = assertRefused("unsupported_size") { try pipeline.useSize(height: 128, width: 64) }
        XCTAssertTrue(error?.description.contains("64x64, 96x64, 64x96 (width x height)") ?? false, "\(String(describing: error))")
        assertRefused("unsupported_size") { try pipeline.useSize(height: 100, width: 64) }  // not a multiple of the latent factor
        assertRefused("unsupported_size") { try pipeline.useSize(height: 64, width: nil) }
        XCTAssertEqual(pipeline.size, ImageSize(height: 96, width: 64), "a refused size changes nothing")
        XCTAssertEqual(try pipeline.useSize(height: nil, width: nil), ImageSize(height: 64, width: 64))
        XCTAssertEqual(ImageSize(height: 64, width: 96).signature(first: three[0]), "size_96x64")
        XCTAssertEqual(three[0].signature(first: three[0]), "serving_default")
    }

    func testMalformedSizeListsAreInvalidManifests() throws {
        var bundle = try BundleBuilder(in: try TestEnv.temporaryFolder(self))
        func pair(_ values: [Int]) -> JSONValue { .array(values.map { JSONValue.number(Double($0)) }) }
        let bad: [JSONValue] = [
            .array([]), .array([pair([64, 96])]),  // empty; first is not height x width
            .array([pair([64, 64]), pair([64, 64])]),  // a size twice
            .array([pair([64, 64]), pair([64])]),  // not a pair
            .array([pair([64, 64]), pair([4, 64])]),  // below 8
            .array([pair([64, 64]), pair([68, 64])]),  // not a multiple of 8
            .array([pair([64, 64]), .string("96x64")]), .string("64x64"),
        ]
        for value in bad {
            try bundle.set(["pipeline", "sizes"], value)
            let error = assertRefused("invalid_manifest") { _ = try bundle.load() }
            if case .invalidManifest(let key, _)? = error {
                XCTAssertTrue(key.hasPrefix("pipeline.sizes"), "\(value): \(key)")
            }
        }
    }

    func testALiteRTRunGoesToTheSignatureOfItsInputShapes() throws {
        let signatures: [(name: String, shapes: [[Int]])] = [
            ("serving_default", [[2, 4, 8, 8], [2]]), ("size_64x96", [[2, 4, 12, 8], [2]]), ("size_96x64", [[2, 4, 8, 12], [2]]),
        ]
        XCTAssertEqual(try ImageSizes.chooseSignature(signatures, feeds: [[2, 4, 8, 12], [2]]), 2)
        XCTAssertEqual(try ImageSizes.chooseSignature(signatures, feeds: [[2, 4, 8, 8], [2]]), 0)
        let error = assertRefused("unsupported_size") { _ = try ImageSizes.chooseSignature(signatures, feeds: [[2, 4, 16, 16], [2]]) }
        XCTAssertTrue(error?.description.contains("size_96x64 [2, 4, 8, 12]") ?? false, "\(String(describing: error))")
        XCTAssertEqual(try ImageSizes.chooseSignature(Array(signatures.prefix(1)), feeds: [[1]]), 0, "one signature: always it")
    }

    func testGoldenFilesOfABundleWithSeveralSizesHoldOneRunPerSize() throws {
        let golden = try TestEnv.goldenFiles(SizesTests.sizedModel)
        XCTAssertEqual(golden.size, ImageSize(height: 64, width: 64))
        XCTAssertEqual(Set(golden.otherSizes.keys), [ImageSize(height: 64, width: 96), ImageSize(height: 96, width: 64)])
        for size in three {
            let at = try golden.atSize(size)
            XCTAssertEqual(at.size, size)
            XCTAssertEqual(at.latentShape, [1, 4, size.height / 8, size.width / 8])
            XCTAssertEqual(try at.floatTensor("initial_noise").shape, at.latentShape)
            XCTAssertEqual(at.prompt, golden.prompt)
        }
        assertRefused("unsupported_size") { _ = try golden.atSize(ImageSize(height: 128, width: 128)) }
        // one-size golden files (written before sizes existed) still read, with no size
        let old = try TestEnv.goldenFiles("shapes-sd-step4")
        XCTAssertNil(old.size)
        XCTAssertEqual(try old.atSize(ImageSize(height: 64, width: 64)).dir, old.dir)
        // a golden.json whose size folder points outside is refused
        let copy = try TestEnv.temporaryFolder(self).appendingPathComponent("golden")
        try FileManager.default.copyItem(at: TestEnv.golden.appendingPathComponent(SizesTests.sizedModel), to: copy)
        let file = copy.appendingPathComponent("golden.json")
        let json = try JSONValue.read(file)
        var members = json.objectValue ?? [:]
        var entries = members["sizes"]?.arrayValue ?? []
        var first = entries.first?.objectValue ?? [:]
        first["golden"] = .string("../../etc")
        entries[0] = .object(first)
        members["sizes"] = .array(entries)
        try Data(JSONValue.object(members).serialized().utf8).write(to: file)
        assertRefused("path_outside_bundle") { _ = try GoldenFiles(dir: copy).atSize(ImageSize(height: 64, width: 96)) }
    }
}
