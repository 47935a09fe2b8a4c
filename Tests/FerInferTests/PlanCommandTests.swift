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
                         "sb | 1x1 packed GEMM + ReLU", "sb | Conv1d across channels", "fc | linear", "fc | softmax"] {
            XCTAssertTrue(pairs.contains(expected), "\(expected) not in \(pairs)")
        }
    }

    func testClassifyingWithTheDetectorIsOneClearError() throws {
        let result = try CLI.run(["classify", "--model", "weights/retinaface-mobilenet0.25.pth", "Tests/Fixtures/inputs/random-b1.npy"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("is a face detector, not a classifier or embedder"), result.stderr)
    }
}
