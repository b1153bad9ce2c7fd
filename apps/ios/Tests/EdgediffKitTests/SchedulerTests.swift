import XCTest
@testable import EdgediffKit

/// Every scheduler step against the golden files: fed the host's guided noise predictions (and, for LCM, the host's
/// injected noise), the table scheduler must land on the host's latents after each step.
final class SchedulerTests: XCTestCase {
    func testEveryStepsLatentsMatchTheGoldenFiles() throws {
        for model in TestEnv.goldenModels {
            let golden = try TestEnv.goldenFiles(model)
            var scheduler = TableScheduler(tables: try golden.schedulerTables())
            XCTAssertEqual(scheduler.className, golden.scheduler)
            XCTAssertEqual(scheduler.size, golden.steps)
            var x = try golden.floatTensor("initial_latents").data
            scheduler.reset()
            var worst = 0.0
            for i in 0..<scheduler.size {
                let modelInput = scheduler.scaleModelInput(x, i)
                if i == 0 {
                    XCTAssertEqual(GoldenCheck.maxAbsDiff(modelInput, try golden.floatTensor("step0_model_input").data), 0, "step 0 model input")
                }
                let prediction = try golden.floatTensor(GoldenFiles.stepName("noise_pred_step", i)).data
                let noiseName = GoldenFiles.stepName("step_noise", i)
                XCTAssertEqual(scheduler.stepNeedsNoise(i), golden.has(noiseName), "\(model) step \(i) noise")
                let noise: [Float]? = try golden.has(noiseName) ? golden.floatTensor(noiseName).data : nil
                x = try scheduler.step(prediction, i, x, noise: noise)
                let expected = try golden.floatTensor(GoldenFiles.stepName("latents_after_step", i)).data
                let difference = GoldenCheck.maxAbsDiff(x, expected)
                worst = max(worst, difference)
                XCTAssertLessThanOrEqual(difference, 1e-6, "\(model) step \(i): latents differ by \(difference)")
                x = expected  // each step from the host's latents: a failure names its own step
            }
            print("scheduler \(model) (\(scheduler.className), \(scheduler.size) steps): max |latent - host| = \(worst)")
        }
    }

    func testSteppingOutOfOrderIsANamedSchedulerError() throws {
        var scheduler = TableScheduler(tables: try TestEnv.goldenFiles("shapes-sd").schedulerTables())
        scheduler.reset()
        let x = [Float](repeating: 0.5, count: 256)
        // DPM-Solver++ 2M's second step combines the previous output: skipping step 0 must be refused.
        assertRefused("unsupported_scheduler") { _ = try scheduler.step(x, 1, x) }
    }

    func testANoiseInjectingStepWithoutNoiseIsRefused() throws {
        var scheduler = TableScheduler(tables: try TestEnv.goldenFiles("shapes-sd-lcm4").schedulerTables())
        scheduler.reset()
        let x = [Float](repeating: 0, count: 256)
        assertRefused("unsupported_scheduler") { _ = try scheduler.step(x, 0, x, noise: nil) }
        assertRefused("invalid_tensor") { _ = try scheduler.step(x, 0, [Float](repeating: 0, count: 3), noise: x) }
    }

    func testTheGuidanceEmbeddingMatchesTheHostsTimestepCond() throws {
        for model in ["shapes-sd-step4", "shapes-sd-lcm4"] {
            let golden = try TestEnv.goldenFiles(model)
            let expected = try golden.floatTensor("timestep_cond")
            let actual = try TextToImage.guidanceScaleEmbedding(golden.guidance - 1, dim: expected.shape.last ?? 0)
            let difference = GoldenCheck.maxAbsDiff(actual, expected.data)
            XCTAssertEqual(actual.count, expected.count)
            XCTAssertLessThanOrEqual(difference, 1e-6, "\(model) timestep_cond differs by \(difference)")
        }
    }

    func testTablesOfAnUnknownFormatOrClassAreRefused() throws {
        var tables = try JSONValue.read(TestEnv.golden.appendingPathComponent("shapes-sd/scheduler_tables.json"))
        tables = try BundleBuilder.setting(tables, ["format"], .string("edgediff-scheduler-tables/9"))
        assertRefused("unsupported_scheduler") { _ = try SchedulerTables.parse(tables, key: "tables") }
        tables = try BundleBuilder.setting(tables, ["format"], .string(SchedulerTables.format))
        tables = try BundleBuilder.setting(tables, ["class_name"], .string("KarrasVeScheduler"))
        assertRefused("unsupported_scheduler") { _ = try SchedulerTables.parse(tables, key: "tables") }
    }
}
