import Foundation
import XCTest

/// `flops`, `bench --profile` and model checks read the engine's plan: every row is labelled by
/// the PyTorch module and the kernel that ran, and the detector is a model like the others.
final class PlanCommandTests: XCTestCase {
    func testFlopsReportsThePapersFiguresPerStage() throws {
        let result = try CLI.run(["flops", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = result.json
        XCTAssertEqual(json["parameters"] as? Int, 2_676_161)
        XCTAssertEqual(Double(try XCTUnwrap(json["macs_fvcore"] as? Int)) / 1e6, 397.2, accuracy: 0.05)
        XCTAssertEqual(Double(try XCTUnwrap(json["macs_thop"] as? Int)) / 1e6, 406.2, accuracy: 0.05)
        let text = try CLI.run(["flops"])
        XCTAssertTrue(text.stdout.contains("LFNSB (7 classes), batch 1, input 3x112x112"), text.stdout)
        XCTAssertTrue(text.stdout.contains("features.5"), text.stdout)
    }

    func testFlopsOfTheDetectorAtItsDefaultSize() throws {
        let result = try CLI.run(["flops", "--model", "weights/retinaface-mobilenet0.25.pth"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("RetinaFace (MobileNet-0.25), batch 1, input 3x640x640"), result.stdout)
        for stage in ["body", "fpn", "ssh1", "ClassHead"] { XCTAssertTrue(result.stdout.contains(stage), "\(stage): \(result.stdout)") }
    }

    func testProfileRowsNameTheHeadsOwnOperations() throws {
        let result = try CLI.run(["bench", "--profile", "--json", "--iterations", "2", "--warmup", "0"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try XCTUnwrap(result.json["profile"] as? [[String: Any]])
        let pairs = rows.map { "\($0["stage"] as? String ?? "") | \($0["operation"] as? String ?? "")" }
        XCTAssertFalse(pairs.contains { $0.contains("feature map copy") }, "\(pairs)")
        for expected in ["features.0 | 3x3 conv s2 (direct)", "features.3 | 1x1 packed GEMM + PReLU", "features.3 | attention gates",
                         "sb | 1x1 packed GEMM + ReLU", "sb | Conv1d across channels", "fc | linear", "fc | softmax",
                         "every step | weights read into the cache ahead"] {
            XCTAssertTrue(pairs.contains(expected), "\(expected) not in \(pairs)")
        }
        // Arithmetic per row and per pass: LFNSB's convolutions, depthwise taps and attention
        // products are 387 M multiply-accumulates (fvcore counts 397 M with the BatchNorms this
        // runtime folds away), against a measured FMA peak.
        let passGflop = try XCTUnwrap(result.json["pass_gflop"] as? Double)
        XCTAssertEqual(passGflop, 0.774, accuracy: 0.001)
        let gemm = try XCTUnwrap(rows.first { $0["stage"] as? String == "features.3" && $0["operation"] as? String == "1x1 packed GEMM + PReLU" })
        XCTAssertGreaterThan(try XCTUnwrap(gemm["gflop_per_pass"] as? Double), 0.01)
        let softmax = try XCTUnwrap(rows.first { $0["operation"] as? String == "softmax" })
        XCTAssertEqual(softmax["gflop_per_pass"] as? Double, 0)
        XCTAssertGreaterThan(try XCTUnwrap(gemm["gflops_per_s"] as? Double), 1)
        let peak = try XCTUnwrap(result.json["fma_peak_gflops_per_s_per_thread"] as? Double)
        XCTAssertGreaterThan(peak, 1)
        let fraction = try XCTUnwrap(result.json["fraction_of_peak"] as? Double)
        XCTAssertTrue(fraction > 0 && fraction < 1, "fraction of peak \(fraction)")
        XCTAssertEqual(result.json["executed_gflop"] as? Double, passGflop, "nothing runs Winograd in LFNSB")
    }

    func testTheDetectorsRateCountsWhatWinogradMultiplies() throws {
        let result = try CLI.run(["bench", "--model", "weights/retinaface-mobilenet0.25.pth", "--profile", "--json", "--iterations", "2", "--warmup", "0"])
        XCTAssertEqual(result.status, 0, result.stderr)
        // At 640x640: 1.962 GFLOP as the model counts it, of which 1.170 in 3x3 convolutions at
        // stride 1 that Winograd multiplies a quarter of (36 per 4x4 tile against 144).
        let model = try XCTUnwrap(result.json["pass_gflop"] as? Double), executed = try XCTUnwrap(result.json["executed_gflop"] as? Double)
        XCTAssertEqual(model, 1.962, accuracy: 0.001)
        XCTAssertEqual(executed, 1.962 - 1.170 * 3 / 4, accuracy: 0.002)
        let rows = try XCTUnwrap(result.json["profile"] as? [[String: Any]])
        let merges = try XCTUnwrap(rows.first { $0["stage"] as? String == "fpn" && $0["operation"] as? String == "3x3 conv (Winograd) + LeakyReLU" })
        XCTAssertEqual(try XCTUnwrap(merges["executed_gflop_per_pass"] as? Double) * 4, try XCTUnwrap(merges["gflop_per_pass"] as? Double), accuracy: 1e-6)
        let fraction = try XCTUnwrap(result.json["fraction_of_peak"] as? Double)
        XCTAssertTrue(fraction > 0 && fraction < 1, "fraction of peak \(fraction)")
    }

    func testClassifyingWithTheDetectorIsOneClearError() throws {
        let result = try CLI.run(["classify", "--model", "weights/retinaface-mobilenet0.25.pth", "Tests/Fixtures/inputs/random-b1.npy"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("is a face detector, not a classifier or embedder"), result.stderr)
    }
}
