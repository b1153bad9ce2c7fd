import XCTest
@testable import EdgediffKit

/// The report `edgediff profile --import FILE --tool app` reads (edgediff/profile/parsers/app_report.py).
final class BenchmarkReportTests: XCTestCase {
    func testTheReportHasTheImportersKeysAndConsistentStatistics() throws {
        let unet = ComponentBenchmark(component: "unet", latenciesMs: [101.2, 99.8, 100.4, 130.0, 98.9], computeUnits: "cpuAndNeuralEngine",
                                      loadMs: 1843.2, firstInferenceMs: 412.9, warmup: 3, peakMemoryMb: 812.4, thermalStart: "nominal",
                                      thermalEnd: "fair", settings: ["cold_load_ms": .number(20_000)])
        let report = try BenchmarkReport(
            device: ["model": .string("iPhone16,1"), "name": .string("iPhone"), "system": .string("iOS 18.2")],
            backend: "coreml", precision: "fp16", manifestSha256: String(repeating: "a", count: 64), results: [unet],
            created: Date(timeIntervalSince1970: 1_777_629_600))
        let folder = try TestEnv.temporaryFolder(self)
        let url = folder.appendingPathComponent("report.json")
        try report.write(to: url)
        let json = try JSONValue.read(url)
        XCTAssertEqual(json["format"]?.stringValue, "edgediff-app-benchmark/1")
        XCTAssertEqual(json["device"]?["model"]?.stringValue, "iPhone16,1")
        XCTAssertEqual(json["bundle"]?["backend"]?.stringValue, "coreml")
        XCTAssertEqual(json["created"]?.stringValue, "2026-05-01T10:00:00Z")
        let result = try XCTUnwrap(json["results"]?.arrayValue?.first)
        let allowed: Set<String> = ["component", "compute_units", "load_ms", "first_inference_ms", "warmup", "latencies_ms",
                                    "peak_memory_mb", "thermal_state", "median_ms", "p90_ms", "mean_ms", "min_ms", "max_ms", "runs",
                                    "settings", "notes"]
        XCTAssertTrue(Set(result.objectValue?.keys.map { $0 } ?? []).isSubset(of: allowed))
        XCTAssertEqual(result["median_ms"]?.doubleValue, 100.4)
        XCTAssertEqual(try XCTUnwrap(result["p90_ms"]?.doubleValue), 118.48, accuracy: 1e-9)  // numpy: 101.2 + 0.6 * (130 - 101.2)
        XCTAssertEqual(result["runs"]?.intValue, 5)
        XCTAssertEqual(result["thermal_state"]?["end"]?.stringValue, "fair")
        XCTAssertEqual(result["settings"]?["cold_load_ms"]?.doubleValue, 20_000)
    }

    func testAReportWithoutADeviceModelOrResultsIsRefused() {
        assertRefused("invalid_manifest") {
            _ = try BenchmarkReport(device: [:], backend: "coreml", precision: "fp16", manifestSha256: nil,
                                    results: [ComponentBenchmark(component: "unet", latenciesMs: [1])])
        }
        assertRefused("invalid_manifest") {
            _ = try BenchmarkReport(device: ["model": .string("iPhone16,1")], backend: "coreml", precision: "fp16", manifestSha256: nil,
                                    results: [])
        }
    }

    func testTimestampsAreUTC() {
        XCTAssertEqual(BenchmarkReport.iso8601(Date(timeIntervalSince1970: 0)), "1970-01-01T00:00:00Z")
        XCTAssertEqual(BenchmarkReport.iso8601(Date(timeIntervalSince1970: 951_782_400)), "2000-02-29T00:00:00Z")
        XCTAssertEqual(BenchmarkReport.iso8601(Date(timeIntervalSince1970: 4_102_444_799)), "2099-12-31T23:59:59Z")
    }
}
