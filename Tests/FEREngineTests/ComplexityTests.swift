import FEREngine
import Foundation
import XCTest

/// The `flops` report against fvcore and thop run on the reference models
/// (Tests/Fixtures/complexity.json, from tools/reference/count_complexity.py).
final class ComplexityTests: XCTestCase {
    func testParametersAndBothMACConventionsEqualTheToolsOnEveryFamily() throws {
        let url = Fixtures.directory.appendingPathComponent("complexity.json")
        let reference = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: [String: Any]])
        for c in try Fixtures.checkpoints() where ["lfnsb7-bare", "lfnsb8", "lfn", "mfn", "ddamnet7-2heads", "ddamnet8-1head"].contains(c.form) {
            let key = c.form == "lfnsb7-bare" ? "lfnsb7" : c.form
            let want = try XCTUnwrap(reference[key], key)
            let report = try FERModel(contentsOf: c.path).complexity()
            XCTAssertEqual(report.parameters, want["parameters"] as? Int, key)
            XCTAssertEqual(report.layers.reduce(0) { $0 + $1.parameters }, want["parameters"] as? Int, "\(key): per-layer parameters add up")
            XCTAssertEqual(report.fvcoreTotal, want["fvcore_total"] as? Int, key)
            XCTAssertEqual(report.thopTotal, want["thop_total"] as? Int, key)
        }
    }

    func testTheFiguresInTheSpecification() throws {
        // models.md section 4: LFNSB-7 has 2,676,161 parameters, 397.2 M MACs (fvcore), 406.2 M (thop).
        let report = try FERModel(contentsOf: Fixtures.root.appendingPathComponent("weights/lfnsb7-seeded.pth").path).complexity()
        XCTAssertEqual(report.parameters, 2_676_161)
        XCTAssertEqual(Double(report.fvcoreTotal) / 1e6, 397.2, accuracy: 0.05)
        XCTAssertEqual(Double(report.thopTotal) / 1e6, 406.2, accuracy: 0.05)
        XCTAssertLessThan(report.foldedParameters, report.parameters!, "folding removes the BatchNorms")
    }
}
