import Foundation
import XCTest

/// Tests/Fixtures/eval (written by tools/reference/make_eval_fixtures.py): a labelled set in every
/// layout, with PyTorch's predictions and scikit-learn's metrics per case.
enum EvalFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/eval").path

    struct Image {
        let path: String  // relative to root
        let label: Int
        let predicted: Int
        let probabilities: [Double]
    }

    struct Metrics {
        let accuracy: Double
        let balancedAccuracy: Double
        let macroF1: Double
        let precision: [Double]
        let recall: [Double]
        let f1: [Double]
        let support: [Int]
        let confusion: [[Int]]
        let normalized: [[Double]]
    }

    struct Case {
        let name: String
        let args: [String]  // dataset path relative to root, then flags
        let images: [Image]
        let metrics: Metrics
    }

    static func cases() throws -> (classes: [String], cases: [Case]) {
        let url = URL(fileURLWithPath: root + "/expected.json")
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let classes = try XCTUnwrap(object["classes"] as? [String])
        let cases = try XCTUnwrap(object["cases"] as? [[String: Any]]).map { c -> Case in
            let m = c["metrics"] as! [String: Any]
            return Case(
                name: c["name"] as! String, args: c["args"] as! [String],
                images: (c["images"] as! [[String: Any]]).map {
                    Image(path: $0["path"] as! String, label: $0["label"] as! Int, predicted: $0["predicted"] as! Int,
                          probabilities: ($0["probabilities"] as! [NSNumber]).map(\.doubleValue))
                },
                metrics: Metrics(
                    accuracy: (m["accuracy"] as! NSNumber).doubleValue,
                    balancedAccuracy: (m["balanced_accuracy"] as! NSNumber).doubleValue,
                    macroF1: (m["macro_f1"] as! NSNumber).doubleValue,
                    precision: (m["precision"] as! [NSNumber]).map(\.doubleValue),
                    recall: (m["recall"] as! [NSNumber]).map(\.doubleValue),
                    f1: (m["f1"] as! [NSNumber]).map(\.doubleValue),
                    support: m["support"] as! [Int],
                    confusion: m["confusion_matrix"] as! [[Int]],
                    normalized: (m["confusion_matrix_normalized"] as! [[NSNumber]]).map { $0.map(\.doubleValue) }))
        }
        XCTAssertEqual(cases.count, 5, "expected.json should hold rafdb-test, rafdb-train, folders, list-csv, list-tsv")
        return (classes, cases)
    }
}
